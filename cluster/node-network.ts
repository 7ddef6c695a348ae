// The real-node tier's network, all on this machine: a Linux bridge that holds
// the node's address and the pods' gateway, and one more address on it, the
// `kubernetes` Service's ClusterIP, on which the API server itself listens (port
// 443). Pods reach the API server at the address the kubelet gives them in
// KUBERNETES_SERVICE_HOST without kube-proxy or iptables, and the API server
// reaches the webhook's pod at its own address in its own network namespace.
// Pods get a route to the Service range and to their bridge, and no default
// route: nothing they send can leave this machine.
import { randomBytes, randomInt } from 'node:crypto';
import { runCommand } from './processes.js';

export interface NodeNetwork {
  /** The bridge's name (pvs + 8 hex digits; IFNAMSIZ allows 15). */
  bridge: string;
  /** The pods' range (a /25) and its gateway, which is also the node's address. */
  podCidr: string;
  nodeAddress: string;
  /** The Service range (a /28) and its first address, the `kubernetes` Service's. */
  serviceCidr: string;
  apiserverAddress: string;
  /** The CNI network configuration for containerd (a bridge with host-local addresses). */
  cniConfig(name: string, ipamDataDir: string): string;
  remove(): Promise<void>;
}

const ip = (...args: string[]): Promise<string> => runCommand('ip', args);

/** 10.A.B.0/24 blocks already routed here (ours from other runs, or anyone's). */
async function usedBlocks(): Promise<Set<string>> {
  const routes = await ip('-4', 'route', 'show', 'table', 'all');
  const used = new Set<string>();
  for (const match of routes.matchAll(/\b10\.(\d+)\.(\d+)\.\d+/g)) used.add(`${match[1]}.${match[2]}`);
  return used;
}

/** A random unicast, locally administered MAC (02:xx:...). */
export function bridgeMac(): string {
  const bytes = randomBytes(6);
  bytes[0] = (bytes[0]! & 0xfc) | 0x02;
  return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/**
 * Makes the bridge with both addresses. A random 10.A.B.0/24 in 10.200-249 that
 * nothing on this machine routes yet: concurrent runs each get their own.
 */
export async function createNodeNetwork(): Promise<NodeNetwork> {
  const used = await usedBlocks();
  let block = '';
  for (let tries = 0; tries < 100 && !block; tries++) {
    const candidate = `${randomInt(200, 250)}.${randomInt(0, 256)}`;
    if (!used.has(candidate)) block = candidate;
  }
  if (!block) throw new Error('no free 10.x.y.0/24 block for the real node network');
  const bridge = `pvs${randomBytes(4).toString('hex')}`;
  const network = {
    bridge,
    podCidr: `10.${block}.0/25`,
    nodeAddress: `10.${block}.1`,
    serviceCidr: `10.${block}.128/28`,
    apiserverAddress: `10.${block}.129`,
  };
  // A bridge made without an address takes the lowest MAC of its ports, and a
  // new one each time that port goes: every pod deleted can move the gateway's
  // MAC under the other pods' ARP caches, and their packets to the node and the
  // API server (webhook answers, probe replies, Lease renewals) are dropped for
  // seconds. An address of its own (locally administered) never moves.
  await ip('link', 'add', bridge, 'address', bridgeMac(), 'type', 'bridge');
  const remove = async (): Promise<void> => {
    await ip('link', 'del', bridge).catch(() => undefined);
  };
  try {
    await ip('addr', 'add', `${network.nodeAddress}/25`, 'dev', bridge);
    await ip('addr', 'add', `${network.apiserverAddress}/32`, 'dev', bridge);
    await ip('link', 'set', bridge, 'up');
  } catch (e: unknown) {
    await remove();
    throw e;
  }
  return {
    ...network,
    cniConfig(name: string, ipamDataDir: string): string {
      return JSON.stringify(
        {
          cniVersion: '1.0.0',
          name,
          plugins: [
            {
              type: 'bridge',
              bridge,
              // The bridge holds the gateway address (ours, set above); no
              // masquerade and no default route: pods talk to this machine only.
              isGateway: true,
              isDefaultGateway: false,
              ipMasq: false,
              hairpinMode: true,
              ipam: {
                type: 'host-local',
                ranges: [[{ subnet: network.podCidr, gateway: network.nodeAddress }]],
                routes: [{ dst: network.serviceCidr }],
                dataDir: ipamDataDir,
              },
            },
          ],
        },
        null,
        2,
      );
    },
    remove,
  };
}
