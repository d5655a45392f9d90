/**
 * The one place where secrets are kept out of what marginlab stores and sends: every item a Run
 * journals passes through `Redactor.item` first (so neither the journal nor the server ever sees a
 * secret), and every message from the HTTP layer through `Redactor.text`.
 *  - by name: a param or tag whose name has the word password, passwd, passphrase, token, secret, key,
 *    apikey or credential(s) in it ("db_password", "apiKey", "github.token") is stored as [redacted];
 *  - by value: a run name, param, tag, description or dataset source that contains one of the
 *    configured credentials (MLFLOW_TRACKING_TOKEN / _PASSWORD, the client's own) is stored as
 *    [redacted]; user:password@ in URLs is dropped.
 */
import type { JournalItem } from "./journal";

export const REDACTED = "[redacted]";

const SECRET_WORDS = new Set([
  "password",
  "passwd",
  "passphrase",
  "token",
  "secret",
  "key",
  "apikey",
  "credential",
  "credentials",
]);

/** Whether a param or tag name says it holds a secret (whole words: "monkey" and "tokenizer" do not). */
function isSecretName(name: string): boolean {
  const words = name
    .replace(/([a-z0-9])([A-Z])/g, "$1 $2")
    .toLowerCase()
    .split(/[^a-z0-9]+/);
  return words.some((w) => SECRET_WORDS.has(w));
}

const URL_USERINFO = /(\b[a-z][a-z0-9+.-]*:\/\/)[^/@\s]*@/gi;

export class Redactor {
  private readonly secrets: string[];

  /** `secrets`: the credential strings (and their encodings) that must never be stored or printed. */
  constructor(secrets: readonly string[]) {
    // Very short secrets would redact ordinary words; they are still never sent anywhere but the header.
    this.secrets = [...new Set(secrets)].filter((s) => s.length >= 4);
  }

  /** This redactor with more credentials to hide. */
  plus(secrets: readonly string[]): Redactor {
    return new Redactor([...this.secrets, ...secrets]);
  }

  /** Whether text contains one of the credentials. */
  hasSecret(text: string): boolean {
    return this.secrets.some((secret) => text.includes(secret));
  }

  /** A message with every credential (and any user:password@ in URLs) replaced by ***. */
  text(text: string): string {
    let out = text.replace(URL_USERINFO, "$1***@");
    for (const secret of this.secrets) out = out.split(secret).join("***");
    return out;
  }

  /** A stored value: [redacted] when its name says secret or it contains a credential. */
  value(name: string, value: string): string {
    if (isSecretName(name) || this.hasSecret(value)) return REDACTED;
    return value.replace(URL_USERINFO, "$1");
  }

  /** A journal item as it may be stored and sent. */
  item<T extends JournalItem>(item: T): T {
    const kv = (list: Array<{ key: string; value: string }>) =>
      list.map(({ key, value }) => ({ key, value: this.value(key, value) }));
    switch (item.t) {
      case "create":
        return {
          ...item,
          runName: item.runName === undefined ? undefined : this.value("mlflow.runName", item.runName),
          tags: kv(item.tags),
        };
      case "p":
        return { ...item, params: kv(item.params) };
      case "tag":
        return { ...item, tags: kv(item.tags) };
      case "in":
        return {
          ...item,
          datasets: item.datasets.map((d) => ({
            ...d,
            dataset: { ...d.dataset, source: this.value("source", d.dataset.source) },
          })),
        };
      default:
        return item;
    }
  }
}
