// The runner's public surface: the entry point calls main(argv) for
// `pvshift --mode=runner`. What the runner and the controller share (exit
// codes, summary, progress records) is in src/runner-protocol.ts.
export { main, main as runRunner, runCopy, processIO, type RunnerIO } from './run.js';
export { TEMP_DIR_PREFIX } from './temp-dir.js';
export { parseRunnerArgs, HELP, type RunnerOptions } from './args.js';
