// pvshift against the local cluster lives in cluster/pvshift.ts (the demo uses it too).
export * from '../../cluster/pvshift.js';
