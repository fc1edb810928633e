#!/usr/bin/env node
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { isShardchartError } from '../index.js';
import { DemoError, runDemo } from './demo.js';
import {
  GraphCommandError,
  graphFormats,
  runGraph,
  type GraphFormat,
} from './graph.js';
import { InspectError, runInspect } from './inspect.js';
import type { Level } from 'pino';

const defaultDir = '.shardchart/demo';

const usage = `Usage: shardchart <command> [options]

Commands:
  demo      Run thousands of durable order workflows on LMDB, then prove they survive a restart
              --entities N   order workflows to create (default 3000)
              --dir PATH     LMDB directory, wiped first (default ${defaultDir})
              --seconds S    time budget for driving the workflows (default 20)
  inspect <type> <id>
            Print an entity's state and journal, read-only
              --at SEQ       the state right after journal entry SEQ (default: latest)
              --dir PATH     LMDB directory (default ${defaultDir})
              --module PATH  module whose exports map entity type -> machine
                             (default: the demo's machine for type "order")
  graph <module> <exportName>
            Draw the machine a module exports
              --format F     mermaid (default), dot, json or svg
              --entity T/ID  highlight this entity's latest state (needs --store)
              --store PATH   LMDB directory holding the entity
              --out FILE     write to FILE instead of stdout
  node <module>
            Run one node of a cluster over NATS hosting the module's entity
            types, on natsStore(); logs JSON to stderr; SIGTERM or SIGINT
            leaves gracefully (hands the node's shards over), a second one
            exits at once. The module exports either \`entities\` (type ->
            machine, as createActorSystem takes it) or one export per type
            (\`export const order = orderMachine\` hosts type "order"), and
            optionally \`system\` (the name) and \`options\` (further
            createActorSystem options such as snapshotEvery or actions).
              --nats URL[,URL]  NATS servers with JetStream (required)
              --system NAME     system name (default: the module's \`system\`)
              --node-id ID      unique per running node (default <host>-<pid>)
              --shards N        shard count, the same on every node (default 256)
              --lease-ttl MS    lease of a node's shards (default 5000)
              --log-level L     pino level (default info)
  cluster status
            List a cluster's nodes (incarnation, alive, shards owned, live
            entities, invalid messages), shard owners and entity counts
              --nats URL[,URL]  NATS servers (required)
              --system NAME     system name (required)
              --json            print JSON instead of tables
              --wait MS         how long to collect the nodes' answers (default 1000)
  help      Show this text

Exit codes: 0 done, 1 failed, 2 bad usage.`;

/** A command line the user has to fix; answered with the usage text and exit code 2. */
class UsageError extends Error {
  override readonly name = 'UsageError';
}

/**
 * Runs the `shardchart` command and returns its exit code. Kept apart from
 * the process so the flow reads top to bottom: parse, dispatch, report.
 *
 * @example
 * ```ts
 * process.exitCode = await main(['inspect', 'order', 'o-00001', '--at', '3']);
 * ```
 */
async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'demo': {
        const { values } = parse(rest, {
          entities: { type: 'string' },
          dir: { type: 'string' },
          seconds: { type: 'string' },
        });
        const report = await runDemo({
          entities: integer('--entities', values.entities, 3_000, 1, 1_000_000),
          dir: values.dir ?? defaultDir,
          seconds: number('--seconds', values.seconds, 20),
        });
        return report.ok ? 0 : 1;
      }
      case 'inspect': {
        const { values, positionals } = parse(
          rest,
          {
            at: { type: 'string' },
            dir: { type: 'string' },
            module: { type: 'string' },
          },
          true,
        );
        const [type, id, ...extra] = positionals;
        if (type === undefined || id === undefined || extra.length > 0) {
          throw new UsageError(
            'inspect takes exactly two arguments: <type> <id>',
          );
        }
        await runInspect({
          type,
          id,
          dir: values.dir ?? defaultDir,
          at:
            values.at === undefined
              ? undefined
              : integer('--at', values.at, 0, 0, Number.MAX_SAFE_INTEGER),
          module: values.module,
        });
        return 0;
      }
      case 'graph': {
        const { values, positionals } = parse(
          rest,
          {
            format: { type: 'string' },
            entity: { type: 'string' },
            store: { type: 'string' },
            out: { type: 'string' },
          },
          true,
        );
        const [module, exportName, ...extra] = positionals;
        if (
          module === undefined ||
          exportName === undefined ||
          extra.length > 0
        ) {
          throw new UsageError(
            'graph takes exactly two arguments: <module> <exportName>',
          );
        }
        const format = values.format ?? 'mermaid';
        if (!(graphFormats as readonly string[]).includes(format)) {
          throw new UsageError(
            `--format expects one of ${graphFormats.join(', ')}, got "${format}"`,
          );
        }
        if ((values.entity === undefined) !== (values.store === undefined)) {
          throw new UsageError('--entity and --store go together');
        }
        await runGraph({
          module,
          exportName,
          format: format as GraphFormat,
          entity: values.entity,
          store: values.store,
          out: values.out,
        });
        return 0;
      }
      case 'node': {
        const { values, positionals } = parse(
          rest,
          {
            nats: { type: 'string' },
            system: { type: 'string' },
            'node-id': { type: 'string' },
            shards: { type: 'string' },
            'lease-ttl': { type: 'string' },
            'log-level': { type: 'string' },
          },
          true,
        );
        const [module, ...extra] = positionals;
        if (module === undefined || extra.length > 0) {
          throw new UsageError('node takes exactly one argument: <module>');
        }
        const level = values['log-level'] ?? 'info';
        if (!logLevels.includes(level)) {
          throw new UsageError(
            `--log-level expects one of ${logLevels.join(', ')}, got "${level}"`,
          );
        }
        // Loaded here so that the other commands never load the NATS client.
        const { runNode } = await import('./node.js');
        await runNode({
          module,
          servers: servers(values.nats),
          system: values.system,
          nodeId: values['node-id'],
          shardCount:
            values.shards === undefined
              ? undefined
              : integer('--shards', values.shards, 256, 1, 65_536),
          leaseTtlMs:
            values['lease-ttl'] === undefined
              ? undefined
              : integer(
                  '--lease-ttl',
                  values['lease-ttl'],
                  5_000,
                  300,
                  600_000,
                ),
          logLevel: level as Level,
        });
        return 0;
      }
      case 'cluster': {
        const [sub, ...args] = rest;
        if (sub !== 'status') {
          throw new UsageError(
            sub === undefined
              ? 'cluster expects a subcommand: status'
              : `unknown cluster subcommand "${sub}"`,
          );
        }
        const { values } = parse(args, {
          nats: { type: 'string' },
          system: { type: 'string' },
          json: { type: 'boolean' },
          wait: { type: 'string' },
        });
        if (values.system === undefined) {
          throw new UsageError('cluster status needs --system NAME');
        }
        const { runClusterStatus } = await import('./cluster-status.js');
        await runClusterStatus({
          servers: servers(values.nats),
          system: values.system,
          json: values.json === true,
          waitMs: integer('--wait', values.wait, 1_000, 1, 60_000),
        });
        return 0;
      }
      case 'help':
      case '--help':
      case '-h':
        console.log(usage);
        return 0;
      default:
        throw new UsageError(
          command === undefined
            ? 'no command given'
            : `unknown command "${command}"`,
        );
    }
  } catch (err) {
    if (err instanceof UsageError || isParseError(err)) {
      console.error(`shardchart: ${(err as Error).message}\n\n${usage}`);
      return 2;
    }
    // Expected failures (a missing store, an unknown type, a seq out of
    // range) read better without a stack trace; anything else is a bug.
    if (
      err instanceof InspectError ||
      err instanceof DemoError ||
      err instanceof GraphCommandError ||
      // By name: their modules load the NATS client, so main imports them
      // only when their command runs.
      (err instanceof Error &&
        (err.name === 'NodeCommandError' ||
          err.name === 'ClusterStatusError')) ||
      isShardchartError(err)
    ) {
      console.error(`shardchart: ${err.message}`);
      return 1;
    }
    console.error(err);
    return 1;
  }
}

function parse<O extends NonNullable<ParseArgsConfig['options']>>(
  args: readonly string[],
  options: O,
  allowPositionals = false,
) {
  return parseArgs({
    args: [...args],
    options,
    allowPositionals,
    strict: true,
  });
}

/** node:util parseArgs throws TypeErrors with ERR_PARSE_ARGS_* codes. */
function isParseError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_');
}

const logLevels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'];

/** `--nats a,b` as a list of server URLs. */
function servers(raw: string | undefined): string[] {
  const list = (raw ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  if (list.length === 0) {
    throw new UsageError(
      '--nats expects the URL of a NATS server, e.g. nats://127.0.0.1:4222',
    );
  }
  return list;
}

function number(
  flag: string,
  raw: string | undefined,
  fallback: number,
): number {
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) {
    throw new UsageError(`${flag} expects a positive number, got "${raw}"`);
  }
  return value;
}

function integer(
  flag: string,
  raw: string | undefined,
  fallback: number,
  min: number,
  max: number,
): number {
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new UsageError(
      `${flag} expects an integer from ${min} to ${max}, got "${raw}"`,
    );
  }
  return value;
}

// `shardchart inspect ... | head` closes the pipe early; that is the reader's
// choice, not an error worth a stack trace.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE') throw err;
  process.exit(process.exitCode ?? 0);
});
process.exitCode = await main(process.argv.slice(2));
