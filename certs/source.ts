// What the HTTPS server needs from either certificate mode: the current serving
// key pair and word when it changes.
import { createPrivateKey, X509Certificate } from 'node:crypto';
import type { KeyPair } from './authority.js';

export interface CertificateSource {
  /** The serving certificate and key in use now. */
  current(): KeyPair;
  /** Called with each new pair after it was checked (the key matches the certificate). */
  onChange(listener: (pair: KeyPair) => void): void;
  stop(): Promise<void>;
}

/** Why a pair cannot be served, or undefined when it can. */
export function pairProblem(pair: KeyPair): string | undefined {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(pair.certPem);
  } catch {
    return 'the certificate is not a readable PEM certificate';
  }
  try {
    if (!cert.checkPrivateKey(createPrivateKey(pair.keyPem))) return 'the key does not belong to the certificate';
  } catch {
    return 'the key is not a readable PEM private key';
  }
  return undefined;
}

/** A small listener list shared by both modes. */
export class ChangeListeners {
  private readonly listeners: ((pair: KeyPair) => void)[] = [];
  add(listener: (pair: KeyPair) => void): void {
    this.listeners.push(listener);
  }
  emit(pair: KeyPair): void {
    for (const listener of this.listeners) listener(pair);
  }
}
