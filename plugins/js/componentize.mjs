// Builds topic_router.js into a component with componentize-js's API. (jco 1.35's
// `componentize` command first inspects the WIT through a WASI sandbox that cannot see it
// here; componentize-js itself reads it with Node.)
import { componentize } from '@bytecodealliance/componentize-js';
import { readFile, writeFile } from 'node:fs/promises';

const [source, wit, out] = process.argv.slice(2);
const { component } = await componentize({
  sourcePath: source,
  witPath: wit,
  worldName: 'plugin',
  // No wasi:http imports: the gateway gives plugins no network.
  disableFeatures: ['http', 'fetch-event'],
});
await writeFile(out, component);
