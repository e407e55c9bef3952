// The part of s3rver's API the cache tests use (the package ships no types).
declare module "s3rver" {
  import type { AddressInfo } from "node:net";
  interface S3rverOptions {
    address?: string;
    port?: number;
    silent?: boolean;
    directory: string;
    configureBuckets?: { name: string; configs: unknown[] }[];
  }
  // eslint-disable-next-line no-restricted-syntax -- the package exports its class as the default
  export default class S3rver {
    constructor(opts: S3rverOptions);
    run(): Promise<AddressInfo>;
    close(): Promise<void>;
  }
}
