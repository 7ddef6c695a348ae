// `npx tsx runner/cli.ts --source DIR --target DIR`: the runner without the
// pvshift entry point, for local use and the tests that kill it mid-copy.
import { main } from './index.js';

process.exitCode = await main(process.argv.slice(2));
