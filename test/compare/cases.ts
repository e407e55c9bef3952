// Dockerfiles whose images kiln must produce exactly as BuildKit v0.11.6 does. Their expected
// results (test/compare/golden/*.json) were recorded from the real BuildKit by
// scripts/record-buildkit-goldens.ts; test/e2e/buildkit-golden.test.ts builds each with kiln and
// compares. Only what BuildKit's built-in dockerfile.v0 frontend accepts belongs here.
import { gzipSync } from "node:zlib";

export interface CompareCase {
  name: string;
  files: Record<string, string>;
  /** Extra `kiln build` / `buildctl --opt` settings. */
  target?: string;
  buildArgs?: Record<string, string>;
}

/** A Dockerfile BuildKit rejects: kiln must reject it with the same message and excerpt. */
export interface FailCase {
  name: string;
  dockerfile: string;
  files?: Record<string, string>;
}

/** What BuildKit printed for a FailCase: its message (after "failed to solve: ") and the `>>>` line. */
export interface FailGolden {
  message: string;
  excerpt?: string;
}

const text = (n: number, word: string) => Array.from({ length: n }, (_, i) => `${word} ${i}`).join("\n") + "\n";

export const cases: CompareCase[] = [
  {
    name: "instructions",
    target: "final",
    buildArgs: { GREETING: "hello" },
    files: {
      Dockerfile: [
        "ARG BASE=busybox",
        "FROM $BASE AS base",
        "ARG GREETING=hi",
        'ENV A=1 B="two words"',
        "ENV C=${A}-$B D=${UNSET:-dflt} E=${A:+alt}",
        "WORKDIR /w/x",
        "WORKDIR sub",
        'RUN echo "$GREETING $C $D $E" > out.txt && pwd > pwd.txt',
        'RUN ["/bin/sh", "-c", "echo exec-form > /exec.txt"]',
        "COPY dir/ /copied/",
        "COPY dir /copied-dir",
        "COPY a.txt b.txt /multi/",
        "COPY *.txt /glob/",
        "COPY a.txt /renamed.txt",
        "COPY --chown=1000:1000 --chmod=600 a.txt /owned.txt",
        "COPY --chown=nobody:nogroup b.txt /named-owner.txt",
        "ADD a.txt /added.txt",
        "ADD dir /added-dir/",
        "USER nobody",
        'LABEL l1=v1 "l 2"=v2 l3="${A}"',
        "EXPOSE 8080 53/udp 9000-9001",
        'ENTRYPOINT ["/bin/echo"]',
        "CMD echo hello",
        "FROM base AS final",
        "RUN id -un > /tmp/whoami",
        "STOPSIGNAL SIGQUIT",
        "FROM busybox AS unused",
        "RUN exit 1",
      ].join("\n"),
      "a.txt": "A\n",
      "b.txt": "B\n",
      "dir/nested/f.txt": "F\n",
      "dir/top.txt": "T\n",
    },
  },
  {
    name: "multistage-copy-from",
    files: {
      Dockerfile: [
        "FROM busybox AS build",
        "RUN mkdir -p /out/sub && echo built > /out/sub/b.txt && ln -s sub/b.txt /out/link",
        "FROM busybox AS other",
        "RUN echo other > /o.txt",
        "FROM scratch",
        "COPY --from=build /out /app",
        "COPY --from=1 /o.txt /",
        "COPY --from=busybox /etc/passwd /passwd",
        "COPY --from=build --chown=2:3 /out/sub/b.txt /owned/",
        'CMD ["/app/sub/b.txt"]',
      ].join("\n"),
    },
  },
  {
    name: "filesystem-details",
    files: {
      Dockerfile: [
        "FROM busybox",
        "RUN mkdir -p /d/keep /d/gone && echo k > /d/keep/k && echo g > /d/gone/g && echo x > /x && echo y > /y",
        // Whiteouts and opaque directories across layers.
        "RUN rm /x && rm -rf /d/gone && rm /bin/vi",
        "RUN rm -rf /d && mkdir -p /d/new && echo n > /d/new/n",
        // Hard links, setuid/setgid/sticky bits, fifos, odd modes, owners.
        "RUN echo h > /h1 && ln /h1 /h2 && ln /h1 /bin/h3",
        "RUN cp /bin/busybox /suid && chmod 4755 /suid && mkdir /sgid /sticky && chmod 2775 /sgid && chmod 1777 /sticky",
        "RUN mkfifo /fifo && chmod 640 /fifo && touch /ro && chmod 0400 /ro && chown 123:456 /ro",
        "RUN ln -s /nowhere /dangling && ln -s ../etc/passwd /bin/rel",
      ].join("\n"),
    },
  },
  {
    name: "heredocs",
    files: {
      Dockerfile: [
        "FROM busybox",
        "ARG NAME=world",
        "RUN <<EOF",
        "echo hello $NAME > /h1",
        "echo second >> /h1",
        "EOF",
        "RUN <<'EOF' sh",
        "echo \"$NAME literal\" > /h2",
        "EOF",
        "RUN <<-EOF",
        "\techo tabbed > /h3",
        "\tEOF",
        "RUN <<EOF",
        "#!/bin/sh",
        "echo shebang > /h4",
        "EOF",
        "COPY <<EOF /inline.txt",
        "inline $NAME",
        "EOF",
        "COPY <<A <<B /many/",
        "a",
        "A",
        "b",
        "B",
        "RUN cat /many/A /many/B > /many/ab",
      ].join("\n"),
    },
  },
  {
    name: "metadata-instructions",
    files: {
      Dockerfile: [
        "FROM busybox",
        "MAINTAINER someone <s@example.com>",
        'SHELL ["/bin/sh", "-ec"]',
        "RUN echo via-shell > /s",
        "VOLUME /data /logs",
        'VOLUME ["/json"]',
        "HEALTHCHECK --interval=5s --timeout=3s --start-period=1s --retries=4 CMD wget -q localhost || exit 1",
        "ONBUILD RUN echo triggered > /onbuild",
        "STOPSIGNAL 9",
        "USER 1000:1000",
        'ENTRYPOINT ["/bin/sh"]',
        "CMD [\"-c\", \"echo hi\"]",
        "EXPOSE 80/tcp",
      ].join("\n"),
    },
  },
  {
    name: "onbuild-and-healthcheck-none",
    files: {
      Dockerfile: [
        "FROM busybox AS parent",
        "ONBUILD RUN echo from-trigger > /trig",
        "HEALTHCHECK CMD true",
        "FROM parent AS child",
        "HEALTHCHECK NONE",
        "RUN test -f /trig && cp /trig /trig-copy",
      ].join("\n"),
    },
  },
  {
    name: "run-mounts",
    files: {
      Dockerfile: [
        "FROM busybox AS src",
        "RUN mkdir /stuff && echo s > /stuff/s.txt",
        "FROM busybox",
        "RUN --mount=type=bind,from=src,source=/stuff,target=/mnt cp /mnt/s.txt /from-bind",
        "RUN --mount=type=bind,target=/ctx cat /ctx/a.txt > /from-ctx",
        "RUN --mount=type=bind,source=a.txt,target=/one.txt,rw echo changed > /one.txt && cat /one.txt > /rw-bind",
        "RUN --mount=type=cache,target=/cache,id=c1 echo cached > /cache/c && cp /cache/c /from-cache",
        "RUN --mount=type=tmpfs,target=/scratch,size=1m echo t > /scratch/t && ls /scratch > /from-tmpfs",
        "RUN --network=none echo offline > /net",
        "RUN --mount=type=cache,target=/var/cache/x,uid=1000,gid=1000,mode=0700 stat -c '%u %g %a' /var/cache/x > /cache-owner",
      ].join("\n"),
      "a.txt": "A\n",
    },
  },
  {
    name: "predefined-args",
    files: {
      Dockerfile: [
        "ARG TARGETPLATFORM",
        "FROM busybox",
        "ARG TARGETPLATFORM",
        "ARG TARGETOS",
        "ARG TARGETARCH",
        "ARG TARGETVARIANT",
        "ARG BUILDPLATFORM",
        "ARG BUILDOS",
        "ARG BUILDARCH",
        "ARG HTTP_PROXY",
        'RUN echo "$TARGETPLATFORM $TARGETOS $TARGETARCH [$TARGETVARIANT] $BUILDPLATFORM $BUILDOS $BUILDARCH" > /args',
        "ARG PLAIN=1",
        "RUN echo $PLAIN > /plain",
      ].join("\n"),
    },
  },
  {
    name: "add-archives",
    files: {
      Dockerfile: [
        "FROM busybox AS mk",
        // Fixed times and gzip -n: the archive's bytes must not depend on when the step ran.
        "RUN mkdir -p /src/t/sub && echo one > /src/t/one && echo two > /src/t/sub/two && cd /src && touch -d '2000-01-01 00:00:00' t t/one t/sub t/sub/two && tar -cf /a.tar t && gzip -n -c /a.tar > /a.tar.gz",
        "FROM busybox",
        // COPY never extracts; ADD extracts local archives, plain or compressed, into the destination.
        "COPY --from=mk /a.tar.gz /copied.tar.gz",
        "ADD plain.tar /plain/",
        "ADD packed.tar.gz /packed",
        "ADD notarchive.txt /n/",
      ].join("\n"),
      "notarchive.txt": text(3, "line"),
      // Filled in by caseFiles: tars written here, so the context needs no tools.
      "plain.tar": "",
      "packed.tar.gz": "",
    },
  },
  {
    name: "dockerignore-and-context",
    files: {
      Dockerfile: ["FROM scratch", "COPY . /ctx/"].join("\n"),
      ".dockerignore": ["*.log", "!keep.log", "secret/", "**/*.tmp", "/Dockerfile"].join("\n"),
      "a.txt": "A\n",
      "x.log": "no\n",
      "keep.log": "yes\n",
      "secret/s": "no\n",
      "deep/er/f.tmp": "no\n",
      "deep/er/f.txt": "yes\n",
    },
  },
  {
    name: "workdir-user-ownership",
    files: {
      Dockerfile: [
        "FROM busybox",
        "USER nobody",
        "WORKDIR /home/nobody/app",
        "COPY a.txt .",
        "USER root",
        "WORKDIR /rootdir",
        "RUN touch made-by-root",
        "ENV PATH=/custom:$PATH",
      ].join("\n"),
      "a.txt": "A\n",
    },
  },
  {
    name: "copy-link",
    files: {
      Dockerfile: ["FROM busybox", "COPY --link a.txt /linked/a.txt", "COPY --link dir /linked-dir", "RUN cat /linked/a.txt > /after-link"].join("\n"),
      "a.txt": "A\n",
      "dir/d.txt": "D\n",
    },
  },
];

// Left out on purpose (covered by test/e2e/dockerfile-instructions.test.ts): messages where kiln
// follows newer BuildKit (`Invalid signal`, `--chmod=999` refused) and
// the ones that depend on the network (a missing image or stage name falls back from the mirror
// to docker.io, which BuildKit reports as a DNS failure here).
export const failCases: FailCase[] = [
  { name: "unknown-instruction", dockerfile: "FROM busybox\nRUNN echo\n" },
  { name: "instruction-before-from", dockerfile: "ARG A=1\nRUN true\nFROM busybox\n" },
  { name: "bad-network", dockerfile: "FROM busybox\nRUN --network=outer true\n" },
  { name: "bad-mount-key", dockerfile: "FROM busybox\nRUN --mount=type=cache,target=/c,sharng=locked true\n" },
  { name: "unknown-flag", dockerfile: "FROM busybox\nCOPY --fro=x Dockerfile /\n" },
  { name: "bad-mount-type", dockerfile: "FROM busybox\nRUN --mount=type=volume,target=/c true\n" },
  { name: "missing-required-secret", dockerfile: "FROM busybox\nRUN --mount=type=secret,id=nope,required=true cat /run/secrets/nope\n" },
  { name: "copy-missing-path", dockerfile: "FROM busybox\nCOPY nope.txt /\n" },
  { name: "failing-run", dockerfile: "FROM busybox\nRUN echo boom && exit 3\n" },
  { name: "from-without-image", dockerfile: "FROM\n" },
  { name: "env-without-value", dockerfile: "FROM busybox\nENV\n" },
  { name: "healthcheck-bad-duration", dockerfile: "FROM busybox\nHEALTHCHECK --interval=5x CMD true\n" },
  { name: "copy-one-arg", dockerfile: "FROM busybox\nCOPY onlyone\n" },
  { name: "expose-empty", dockerfile: "FROM busybox\nEXPOSE\n" },
];

/** BuildKit's message from buildctl's stderr: the `error: failed to solve: …` line and the excerpt's `>>>` line. */
export function failGolden(stderr: string): FailGolden {
  const lines = stderr.split("\n");
  const errLine = [...lines].reverse().find((l) => l.startsWith("error: ")) ?? "";
  const excerpt = lines.find((l) => /^\s*\d+ \| >>> /.test(l))?.replace(/^\s*\d+ \| >>> /, "");
  return { message: errLine.replace(/^error: (failed to solve: )?/, ""), ...(excerpt !== undefined ? { excerpt } : {}) };
}

/** Where kiln's stderr for a FailCase departs from BuildKit's; empty when it says the same. */
export function checkFail(want: FailGolden, stderr: string): string[] {
  const out: string[] = [];
  // Registry addresses carry the test's random port; ref ids are random.
  const norm = (x: string) => x.replace(/127\.0\.0\.1:\d+/g, "REGISTRY").replace(/ of ref [a-z0-9]+::[a-z0-9]+:/g, " of ref:");
  if (!norm(stderr).includes(norm(want.message))) out.push(`message: want ${JSON.stringify(want.message)}, got ${JSON.stringify(stderr.split("\n").filter((l) => l.startsWith("error")).join(" / "))}`);
  if (want.excerpt !== undefined && !stderr.includes(`>>> ${want.excerpt}`)) out.push(`excerpt: want ">>> ${want.excerpt}"`);
  return out;
}

/** A minimal POSIX tar holding one file, written without any tool so the case is self-contained. */
export function plainTar(name: string, content: string): Buffer {
  const header = Buffer.alloc(512);
  header.write(name, 0, "utf8");
  header.write("0000644\0", 100);
  header.write("0000000\0", 108);
  header.write("0000000\0", 116);
  header.write(Buffer.byteLength(content).toString(8).padStart(11, "0") + "\0", 124);
  header.write("14000000000\0", 136);
  header.write("        ", 148);
  header.write("0", 156);
  header.write("ustar\0" + "00", 257);
  let sum = 0;
  for (const b of header) sum += b;
  header.write(sum.toString(8).padStart(6, "0") + "\0 ", 148);
  const body = Buffer.alloc(Math.ceil(Buffer.byteLength(content) / 512) * 512);
  body.write(content);
  return Buffer.concat([header, body, Buffer.alloc(1024)]);
}

/** The case's files, with the binary ones filled in. */
export function caseFiles(c: CompareCase): Record<string, string | Buffer> {
  const files: Record<string, string | Buffer> = { ...c.files };
  if ("plain.tar" in files) files["plain.tar"] = plainTar("inside/file.txt", "from a plain tar\n");
  if ("packed.tar.gz" in files) files["packed.tar.gz"] = gzipSync(plainTar("gz/inner.txt", "from a gzipped tar\n"));
  return files;
}
