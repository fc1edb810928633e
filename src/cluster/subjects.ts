/**
 * The subject scheme of a clustered system (part of the wire contract;
 * documented in the README's cluster section). Every subject starts with
 * `shardchart.<system>.`; `<system>` is the system name (letters, digits,
 * `_`, `-`), so it is one subject token.
 *
 * | subject                                   | carries                                                    |
 * | ----------------------------------------- | ---------------------------------------------------------- |
 * | `shardchart.<sys>.shard.<n>`              | events for shard n, in the JetStream stream `SHARDCHART_<sys>_IN` |
 * | `shardchart.<sys>.query.<n>`              | reads of shard n's entities (snapshot, watch), core request-reply to the owner |
 * | `shardchart.<sys>.reply.<node>.<incarnation>` | answers to the sends of one node process               |
 * | `shardchart.<sys>.in.<type>.<id>`         | ingress: any NATS client sends an event by request, gets the result as the reply |
 * | `shardchart.<sys>.state.<n>`              | new states of shard n's watched entities, pushed by the owner (core NATS), and its `moved` notice to their watchers |
 * | `shardchart.<sys>.admin.status`           | `shardchart cluster status` asks every node for its figures |
 */

/** Tokens of NATS subjects must not hold these. */
const UNSAFE_TOKEN = /[\s.*>]/;

export function checkSubjectToken(token: string): boolean {
  return token.length > 0 && !UNSAFE_TOKEN.test(token);
}

export interface Subjects {
  readonly root: string;
  readonly stream: string;
  /** Subject filter of the events stream. */
  readonly shardWildcard: string;
  shard(n: number): string;
  query(n: number): string;
  reply(node: string, incarnation: string): string;
  readonly ingressWildcard: string;
  /** `<type>.<id>` part of an ingress subject, or undefined. */
  parseIngress(subject: string): { type: string; id: string } | undefined;
  state(n: number): string;
  readonly adminStatus: string;
  /** Durable consumer name of shard n. */
  consumer(n: number): string;
}

export function subjectsFor(system: string): Subjects {
  const root = `shardchart.${system}`;
  const ingressPrefix = `${root}.in.`;
  return {
    root,
    stream: `SHARDCHART_${system}_IN`,
    shardWildcard: `${root}.shard.*`,
    shard: (n) => `${root}.shard.${n}`,
    query: (n) => `${root}.query.${n}`,
    reply: (node, incarnation) => `${root}.reply.${node}.${incarnation}`,
    ingressWildcard: `${root}.in.>`,
    parseIngress(subject) {
      if (!subject.startsWith(ingressPrefix)) return undefined;
      const rest = subject.slice(ingressPrefix.length);
      const dot = rest.indexOf('.');
      if (dot <= 0 || dot === rest.length - 1) return undefined;
      // Ids may hold dots: everything after the type token is the id.
      return { type: rest.slice(0, dot), id: rest.slice(dot + 1) };
    },
    state: (n) => `${root}.state.${n}`,
    adminStatus: `${root}.admin.status`,
    consumer: (n) => `shard-${n}`,
  };
}
