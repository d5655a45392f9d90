// Types of gpu-env.cjs (plain CommonJS, so that bin/marginlab.cjs can require it before tsx is registered).
export declare const GPU_PACKAGE: "@tensorflow/tfjs-node-gpu";
export declare function gpuPackageDir(root: string): string;
export declare function cudaWheelsDir(root: string): string;
export declare function gpuBuildInstalled(root: string): boolean;
export declare function cudaLibraryDirs(root: string): string[];
export declare function cudaDeviceVisible(env?: NodeJS.ProcessEnv): boolean;
export declare function gpuNames(): string[];
export declare function missingLoaderDirs(root: string, env?: NodeJS.ProcessEnv): string[];
export declare function loaderPathWithCuda(root: string, env?: NodeJS.ProcessEnv): string;
export declare function needsLoaderRestart(root: string, env?: NodeJS.ProcessEnv): boolean;
