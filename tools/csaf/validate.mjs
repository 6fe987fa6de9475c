// Validates a CSAF 2.0 document with BSI's validator library (the one secvisogram uses): the
// strict JSON schema and every mandatory test (including the VEX profile's 6.1.27.x).
// Usage: node tools/csaf/validate.mjs FILE   (exit 0 if valid; the findings on stdout).
import { readFileSync } from 'node:fs'
import validateStrict from '@secvisogram/csaf-validator-lib/validateStrict.js'
import * as basic from '@secvisogram/csaf-validator-lib/basic.js'

const document = JSON.parse(readFileSync(process.argv[2], 'utf8'))
const result = await validateStrict(Object.values(basic), document)
const problems = result.tests.filter((t) => !t.isValid || t.errors.length > 0)
console.log(JSON.stringify({ isValid: result.isValid, tests: result.tests.length, problems }, null, 2))
process.exit(result.isValid ? 0 : 1)
