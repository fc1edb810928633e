/**
 * Starts a private `nats-server` with JetStream for a test: a free loopback
 * port, its own temporary store directory, killed and restarted at will.
 * Tests never touch the shared server on 127.0.0.1:4222.
 *
 * The binary is looked up on PATH, then where Debian's `nats-server` package
 * puts it (`/usr/sbin`); `.ci/run` installs that package when it is missing.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

export interface NatsServerHandle {
  /** `nats://127.0.0.1:<port>`. */
  readonly url: string;
  readonly port: number;
  /** The JetStream store directory (kept across restarts). */
  readonly storeDir: string;
  /** The running process, undefined while stopped. */
  readonly process: ChildProcess | undefined;
  /** Sends `signal` (default SIGKILL) and waits for the process to exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts the server again on the same port and store directory. */
  restart(): Promise<void>;
  /**
   * SIGSTOP, and resolves once every thread of the server has stopped. A
   * stop is not instant: the kernel stops a multi-threaded process one
   * thread after another as each gets a CPU, and on a loaded machine a
   * thread not yet stopped could still answer a request sent meanwhile.
   */
  pause(): Promise<void>;
  /** SIGCONT. */
  resume(): void;
  /** Kills the server and removes its directory. Idempotent. */
  stop(): Promise<void>;
}

export interface NatsServerOptions {
  /** Extra command-line arguments. */
  readonly args?: readonly string[];
  /** Lines of the server log are passed here (default: dropped). */
  readonly onLog?: (line: string) => void;
}

const CANDIDATES = ['/usr/sbin/nats-server', '/usr/local/sbin/nats-server', '/usr/local/bin/nats-server', '/usr/bin/nats-server'];

/** Path of the nats-server binary, or undefined when none is installed. */
export function findNatsServer(): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir !== '' && existsSync(join(dir, 'nats-server'))) return join(dir, 'nats-server');
  }
  return CANDIDATES.find((p) => existsSync(p));
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (address !== null && typeof address === 'object') resolve(address.port);
        else reject(new Error('no port'));
      });
    });
  });
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tcpConnect({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export async function startNatsServer(options: NatsServerOptions = {}): Promise<NatsServerHandle> {
  const binary = findNatsServer();
  if (binary === undefined) {
    throw new Error('nats-server is not installed: install Debian\'s "nats-server" package (bash .ci/run does it) or put nats-server on PATH.');
  }
  const storeDir = await mkdtemp(join(tmpdir(), 'shardchart-nats-'));
  const port = await freePort();
  let child: ChildProcess | undefined;
  let stopped = false;

  async function launch(): Promise<void> {
    const args = ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', storeDir, ...(options.args ?? [])];
    const proc = spawn(binary as string, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    child = proc;
    let log = '';
    proc.stderr?.setEncoding('utf8');
    proc.stderr?.on('data', (chunk: string) => {
      if (log.length < 20_000) log += chunk;
      if (options.onLog) for (const line of chunk.split('\n')) if (line !== '') options.onLog(line);
    });
    const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
    const deadline = Date.now() + 15_000;
    for (;;) {
      if (log.includes('Server is ready') && (await portOpen(port))) return;
      const early = await Promise.race([exited, new Promise((r) => setTimeout(r, 25, 'wait'))]);
      if (early !== 'wait') throw new Error(`nats-server exited (${String(early)}) while starting:\n${log}`);
      if (Date.now() > deadline) {
        proc.kill('SIGKILL');
        throw new Error(`nats-server did not become ready on port ${port} within 15 s:\n${log}`);
      }
    }
  }

  async function kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const proc = child;
    if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) {
      child = undefined;
      return;
    }
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    proc.kill(signal);
    await exited;
    child = undefined;
  }

  /** True when every thread of `pid` is stopped (state T or t). */
  function allStopped(pid: number): boolean {
    try {
      return readdirSync(`/proc/${pid}/task`).every((tid) => {
        const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
        const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
        return state === 'T' || state === 't';
      });
    } catch {
      // A thread ended while we read: look again.
      return false;
    }
  }

  await launch();
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir,
    get process() {
      return child;
    },
    kill,
    async pause() {
      const proc = child;
      if (proc?.pid === undefined) throw new Error('nats-server is not running');
      proc.kill('SIGSTOP');
      const deadline = Date.now() + 10_000;
      while (!allStopped(proc.pid)) {
        if (Date.now() > deadline) throw new Error('nats-server did not stop within 10 s of SIGSTOP');
        await new Promise((r) => setTimeout(r, 2));
      }
    },
    resume() {
      child?.kill('SIGCONT');
    },
    async restart() {
      await kill('SIGKILL');
      await launch();
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await kill('SIGKILL');
      await rm(storeDir, { recursive: true, force: true });
    },
  };
}
