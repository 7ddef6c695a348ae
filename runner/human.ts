// Human-readable sizes for messages: binary units, as `df -h` and Kubernetes
// quantities (Gi) use, so a user can compare with a PVC's request directly.
export function formatBytes(bytes: number | bigint): string {
  let value = Number(bytes);
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`;
}
