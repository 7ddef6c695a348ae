#!/usr/bin/env node
// kubectl-pvshift: the kubectl plugin for pvshift (`kubectl pvshift ...`).
import { main } from './main.js';

process.exitCode = await main(process.argv.slice(2));
