// The real-node tier's bridge, as pods come and go. Each pod is a veth pair
// whose host end joins the bridge (the CNI bridge plugin); here the pairs are
// made by hand, with MACs below any random one, which is what made the bridge
// change its own address in the e2e runs: it then dropped every pod's traffic
// to the gateway (the node, the API server) until their ARP caches caught up.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import t from 'tap';
import { createNodeNetwork } from '../../cluster/node-network.js';

const ip = (...args: string[]): string => execFileSync('ip', args, { encoding: 'utf8' });
const macOf = (link: string): string => readFileSync(`/sys/class/net/${link}/address`, 'utf8').trim();

t.test("the bridge keeps its MAC while pods' interfaces join and leave it", async (t) => {
  const network = await createNodeNetwork();
  t.teardown(() => network.remove());
  const at = macOf(network.bridge);
  t.match(at, /^[0-9a-f][26ae]:/, 'a locally administered address of its own');

  const tag = randomBytes(3).toString('hex');
  const pods = ['00:00:00:00:00:01', '00:00:00:00:00:02'].map((mac, i) => ({
    host: `pvt${tag}h${i}`,
    peer: `pvt${tag}p${i}`,
    mac: `02:${mac.slice(3)}`,
  }));
  t.teardown(() => {
    for (const pod of pods) {
      try {
        ip('link', 'del', pod.host);
      } catch {
        // already gone with the test
      }
    }
  });
  const seen: string[] = [];
  for (const pod of pods) {
    ip('link', 'add', pod.host, 'address', pod.mac, 'type', 'veth', 'peer', 'name', pod.peer);
    ip('link', 'set', pod.host, 'master', network.bridge, 'up');
    seen.push(macOf(network.bridge));
  }
  for (const pod of pods) {
    ip('link', 'del', pod.host);
    seen.push(macOf(network.bridge));
  }
  t.same(seen, [at, at, at, at], 'the same MAC after each pod joined and after each left');
});
