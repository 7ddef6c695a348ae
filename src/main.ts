#!/usr/bin/env node
// The one entry point of the one image: `--mode` picks webhook, controller
// (both in one process if asked) or runner (the copy pod's program). Only
// the chosen side is loaded: the runner starts in about 65 ms, where loading
// the services' modules first cost about 360 ms on every copy pod.

export async function main(argv: string[]): Promise<number> {
  const modeFlag = argv.find((a) => a.startsWith('--mode='));
  if (modeFlag === '--mode=runner') {
    const { main: runner } = await import('../runner/index.js');
    return runner(argv.filter((a) => a !== modeFlag));
  }
  const { serve } = await import('./services.js');
  return serve(argv);
}

const code = await main(process.argv.slice(2));
process.exit(code);
