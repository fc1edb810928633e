import { memoryStore } from '../../adapters/memory/index.js';
import { runStoreConformance } from './conformance.js';

runStoreConformance('memory', () => Promise.resolve({ store: memoryStore() }));
