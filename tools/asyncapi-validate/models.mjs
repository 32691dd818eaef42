// Generates TypeScript models from an AsyncAPI document with AsyncAPI's own model generator
// (Modelina) and fails unless every message gives two models of its own: its data, named as
// the message (as the Rust and Python types are), and its envelope, `<message>Envelope`. A
// title shared by several payloads would fold them into one model. Usage: node models.mjs path/to/asyncapi.yaml
import { readFile } from 'node:fs/promises';
import { Parser } from '@asyncapi/parser';
import { TypeScriptGenerator } from '@asyncapi/modelina';

const path = process.argv[2];
if (!path) {
  console.error('usage: node models.mjs <asyncapi.yaml>');
  process.exit(2);
}
const { document } = await new Parser().parse(await readFile(path, 'utf8'));
if (!document) {
  console.error(`${path}: not a valid AsyncAPI document (run validate.mjs for why)`);
  process.exit(1);
}
const models = await new TypeScriptGenerator().generate(document);
const made = new Set(models.map((model) => model.modelName));
const messages = document.components().messages().all();
const missing = messages
  .flatMap((message) => [message.name(), `${message.name()}Envelope`])
  .filter((name) => !made.has(name));
if (messages.length === 0 || missing.length > 0) {
  console.error(`${path}: Modelina made no model named ${missing.join(', ') || '(no messages)'}`);
  console.error(`it made: ${[...made].sort().join(' ')}`);
  process.exit(1);
}
console.log(`${path}: Modelina makes a model of the data and one of the envelope for each of the ${messages.length} messages (${models.length} models in all)`);
