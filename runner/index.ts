// The runner's public surface: the entry point calls main(argv) for
// `pvshift --mode=runner`, the controller imports the exit codes.
export { main, main as runRunner, runCopy, processIO, type RunnerIO } from './run.js';
export { TEMP_DIR_PREFIX } from './temp-dir.js';
export { RUNNER_EXIT, classifyRunnerExit, type RunnerExitCode, type ExitClass } from './exit-codes.js';
export { parseRunnerArgs, HELP, type RunnerOptions, type VerifyMode } from './args.js';
export type { Summary } from './summary.js';
export type { ProgressRecord } from './rsync-progress.js';
