// Reference GPT-2 encoding for the tests: prints, for each file given, one line with the JSON
// array of ids that the npm package gpt-3-encoder (a port of OpenAI's encoder.py) produces.
// Usage: node tools/gpt3_encode.js FILE...   (run scripts/fetch_gpt2_vocab.sh first)
'use strict';
const fs = require('fs');
const path = require('path');

const pkg = path.join(__dirname, '..', 'third_party', 'npm', 'node_modules', 'gpt-3-encoder');
const { encode } = require(pkg);

if (process.argv.length < 3) {
    console.error('usage: node tools/gpt3_encode.js FILE...');
    process.exit(2);
}
for (const file of process.argv.slice(2)) {
    console.log(JSON.stringify(encode(fs.readFileSync(file, 'utf-8'))));
}
