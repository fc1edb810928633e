/**
 * Does the NATS server fsync every write before acknowledging it?
 *
 * JetStream's file store writes each message to the operating system before
 * it acknowledges the publish (the stream store "flushes in place"), so an
 * acknowledged message survives a crash of the server process. It calls
 * fsync only every `sync_interval`, two minutes by default, so a power
 * failure or kernel crash can lose up to that much acknowledged data
 * (Jepsen showed such losses in 2025). nats-server 2.10 added
 * `jetstream { sync_interval: always }`, which fsyncs every write; 2.9 and
 * older have no such option and sync every two minutes.
 *
 * How the store finds out, read in nats-server's `server/opts.go`,
 * `server/jetstream.go` and `server/monitor.go`: `sync_interval: always`
 * sets `sync_always: true` in the `jetstream.config` object of the server's
 * `/varz` monitoring endpoint (and `sync_interval` in nanoseconds when set
 * to a duration). A client connection sees neither; it sees the server
 * version, which settles the question for servers older than 2.10. The
 * same `/varz` data is served over NATS on `$SYS.REQ.SERVER.PING.VARZ`, but
 * only to connections of the system account, which cannot use JetStream,
 * so the store's own connection can never ask there. Hence `monitorUrls`:
 * with them the store reads `/varz` of each server; without them, it can
 * prove a server unsafe from its version but never prove one safe, and
 * treats "cannot tell" as unsafe.
 */

/** What one server says (or what its version implies) about syncing. */
export interface ServerSyncReport {
  /** Server name or monitoring URL, for messages. */
  readonly server: string;
  /** nats-server version, `undefined` when it could not be read. */
  readonly version: string | undefined;
  /**
   * `varz`: read from the monitoring endpoint; `version`: only the version
   * is known (from the client connection); `unreachable`: the monitoring
   * endpoint did not answer.
   */
  readonly source: 'varz' | 'version' | 'unreachable';
  /** `jetstream.config.sync_always` from `/varz`. */
  readonly syncAlways?: boolean | undefined;
  /** `jetstream.config.sync_interval` from `/varz`, in ms. */
  readonly syncIntervalMs?: number | undefined;
  /** Why the endpoint could not be read, for `unreachable`. */
  readonly error?: string | undefined;
}

/** The conclusion drawn from the reports. */
interface SyncVerdict {
  /** True only when every server is known to fsync every write. */
  readonly safe: boolean;
  /** False when at least one server could not be judged. */
  readonly known: boolean;
  /** One sentence per server that is not known to be safe. */
  readonly problems: readonly string[];
}

/** The advice every warning and refusal ends with. */
export const SYNC_ADVICE =
  "Set `jetstream { sync_interval: always }` in every NATS server's configuration (nats-server 2.10 or newer) and pass natsStore({ monitorUrls: ['http://<server>:8222', ...] }) so the store can verify it.";

/** Decides from the reports; no reports at all means "cannot tell". */
export function judgeSync(reports: readonly ServerSyncReport[]): SyncVerdict {
  if (reports.length === 0) {
    return {
      safe: false,
      known: false,
      problems: ['No NATS server reported its JetStream sync setting.'],
    };
  }
  const problems: string[] = [];
  let known = true;
  for (const report of reports) {
    const old = report.version !== undefined && isBefore210(report.version);
    if (report.source === 'unreachable') {
      known = false;
      problems.push(
        `The monitoring endpoint ${report.server} could not be read (${report.error ?? 'no answer'}), so its sync setting is unknown.`,
      );
    } else if (report.source === 'varz' && report.syncAlways === true) {
      continue;
    } else if (old) {
      problems.push(
        `nats-server ${report.version} (${report.server}) has no sync_interval option: it fsyncs JetStream writes only every 2 minutes.`,
      );
    } else if (report.source === 'version') {
      known = false;
      problems.push(
        `nats-server ${report.version ?? '(unknown version)'} (${report.server}) may or may not fsync every write; without its monitoring endpoint the store cannot tell.`,
      );
    } else if (report.syncIntervalMs !== undefined) {
      problems.push(
        `nats-server ${report.version ?? ''} (${report.server}) fsyncs JetStream writes every ${report.syncIntervalMs / 1_000} s (sync_interval), not on every write.`,
      );
    } else {
      problems.push(
        `nats-server ${report.version ?? ''} (${report.server}) runs with the default sync_interval: it fsyncs JetStream writes only every 2 minutes.`,
      );
    }
  }
  return { safe: problems.length === 0, known, problems };
}

/**
 * Gathers the reports: `/varz` of every monitoring URL when given, else the
 * version of the server the connection talks to.
 */
export async function probeSync(
  connectedServer: {
    readonly name: string;
    readonly version: string | undefined;
  },
  monitorUrls: readonly string[],
  timeoutMs: number,
): Promise<ServerSyncReport[]> {
  if (monitorUrls.length === 0) {
    return [
      {
        server: connectedServer.name,
        version: connectedServer.version,
        source: 'version',
      },
    ];
  }
  return Promise.all(monitorUrls.map((url) => readVarz(url, timeoutMs)));
}

async function readVarz(
  url: string,
  timeoutMs: number,
): Promise<ServerSyncReport> {
  const endpoint = `${url.replace(/\/+$/, '')}/varz`;
  try {
    const response = await fetch(endpoint, {
      signal: AbortSignal.timeout(timeoutMs),
    });
    if (!response.ok) {
      return {
        server: endpoint,
        version: undefined,
        source: 'unreachable',
        error: `HTTP ${response.status}`,
      };
    }
    const varz = (await response.json()) as {
      version?: unknown;
      jetstream?: {
        config?: { sync_always?: unknown; sync_interval?: unknown };
      };
    };
    const config = varz.jetstream?.config;
    if (config === undefined) {
      return {
        server: endpoint,
        version: typeof varz.version === 'string' ? varz.version : undefined,
        source: 'unreachable',
        error: 'JetStream is not enabled on this server',
      };
    }
    return {
      server: endpoint,
      version: typeof varz.version === 'string' ? varz.version : undefined,
      source: 'varz',
      syncAlways: config.sync_always === true,
      syncIntervalMs:
        typeof config.sync_interval === 'number'
          ? config.sync_interval / 1_000_000
          : undefined,
    };
  } catch (error) {
    return {
      server: endpoint,
      version: undefined,
      source: 'unreachable',
      error: error instanceof Error ? error.message : String(error),
    };
  }
}

/** True for versions below 2.10.0 ("2.9.10", "v2.9.0-beta"). */
export function isBefore210(version: string): boolean {
  const match = /^v?(\d+)\.(\d+)/.exec(version);
  if (match === null) return false;
  const major = Number(match[1]);
  const minor = Number(match[2]);
  return major < 2 || (major === 2 && minor < 10);
}
