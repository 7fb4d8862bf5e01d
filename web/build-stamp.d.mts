export declare const STAMP_INPUTS: string[];
export declare function sourceHash(repoRoot: string): { source_hash: string; files: number };
