// The snapshot subsystem: the overlayfs snapshotter, mounts, and layer apply/diff.
export type { ActiveMount, MountSpec, SnapshotInfo, Snapshotter } from "./types.js";
export { OverlaySnapshotter, type OverlaySnapshotterOptions } from "./overlay.js";
export { mountAll, unmount, compactOverlayOptions, overlayBaseOptions } from "./mount.js";
export { applyLayer, UnsafeLayerError, type ApplyLayerResult } from "./apply.js";
export { writeDiff, type WriteDiffOptions } from "./diff.js";
export { diskUsage } from "./usage.js";
export {
  encodeTarHeader,
  tarPadding,
  TAR_TRAILER,
  TarEncodeError,
  TypeReg,
  TypeLink,
  TypeSymlink,
  TypeChar,
  TypeBlock,
  TypeDir,
  TypeFifo,
  type TarHeader,
} from "./tarwriter.js";
export { readTar, TarFormatError, type TarEntry, type TarEntryHeader, type TarTime } from "./tarreader.js";
