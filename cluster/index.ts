export {
  startLocalCluster,
  PVSHIFT_DEV_IMAGE,
  pvshiftEntrypoint,
  type LocalCluster,
  type LocalClusterOptions,
} from './local-cluster.js';
export { installVolumeMigrationCrd } from './crds.js';
export { findBinaries, REPO_ROOT, type Binaries } from './binaries.js';
export { isCopyPod } from './fake-kubelet.js';
export { PROVISIONER_NAME, localStorageClasses } from './hostpath-provisioner.js';
export { GiveUp, waitFor, sleep, freePort } from './processes.js';
export {
  installPvshift,
  PVSHIFT_NAMESPACE,
  WEBHOOK_CONFIGURATION,
  type Installation,
  type PvshiftProcess,
  type StartOptions,
} from './pvshift.js';
export {
  LoopProvisioner,
  LOOP_PROVISIONER_NAME,
  loopStorageClasses,
  type LoopProvisionerOptions,
} from './loop-provisioner.js';
export { buildImages, importImages, type BuiltImage, type BuiltImages, type Containerd } from './images.js';
