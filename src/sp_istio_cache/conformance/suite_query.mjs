// Reads the cache-tests suite for sp_istio_cache.conformance and prints JSON on stdout.
// It imports the suite's own modules by absolute path (argv[2] is the suite directory), so
// the classification is the suite's: determineTestResult from test-engine/lib/results.mjs,
// which honours the dependencies between tests.
//
//   node suite_query.mjs SUITE tests            -> [{id, name, kind, suite, depends_on}]
//   node suite_query.mjs SUITE published        -> the list in results/index.mjs
//   node suite_query.mjs SUITE classify F...    -> {F: {test_id: result_type_name}}
//   node suite_query.mjs SUITE result-types     -> {result_type_name: symbol cli.mjs prints}
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'

const [suiteDir, command, ...files] = process.argv.slice(2)
const load = async relative => (await import(pathToFileURL(join(suiteDir, relative)).href))

const suites = (await load('tests/index.mjs')).default

function listTests () {
  return suites.flatMap(suite => suite.tests.map(test => ({
    id: test.id,
    name: test.name,
    kind: test.kind ?? 'required',
    suite: suite.id,
    depends_on: test.depends_on ?? []
  })))
}

async function classify (paths) {
  const { determineTestResult, resultTypes } = await load('test-engine/lib/results.mjs')
  const typeName = new Map(Object.entries(resultTypes).map(([name, type]) => [type, name]))
  const out = {}
  for (const path of paths) {
    const results = JSON.parse(readFileSync(path, 'utf8'))
    const classified = {}
    for (const test of listTests()) {
      classified[test.id] = typeName.get(determineTestResult(suites, test.id, results))
    }
    out[path] = classified
  }
  return out
}

async function resultSymbols () {
  const { resultTypes } = await load('test-engine/lib/results.mjs')
  return Object.fromEntries(Object.entries(resultTypes).map(([name, type]) => [name, type[2]]))
}

const commands = {
  tests: async () => listTests(),
  'result-types': resultSymbols,
  published: async () => (await load('results/index.mjs')).default,
  classify: async () => classify(files)
}
if (!(command in commands)) {
  console.error(`unknown command ${command}; known: ${Object.keys(commands).join(', ')}`)
  process.exit(2)
}
process.stdout.write(JSON.stringify(await commands[command]()) + '\n')
