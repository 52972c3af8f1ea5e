// Runs the repository's Jenkinsfile outside Jenkins, with its declarative
// sections and steps stubbed: each step is recorded, `sh(returnStatus: true)`
// returns the exit code a scenario gives for that kstress command, `unstable`
// and `error` act on the build result as Jenkins does. Groovy parses the file
// as Jenkins would (Jenkins' CPS runs Groovy 2.4), so a syntax error fails here.
//
// Declarative sections are checked for where they stand (DECLARATIVE: a
// section and the sections it may stand in) until a `script` block, where
// anything scripted goes; a stage must have steps, the pipeline an agent and stages.
//
// usage: groovy jenkins_stub.groovy JENKINSFILE SCENARIOS.json  -> one JSON line per scenario
// scenario: {"params": {...}, "soak": [code per shard], "merge": code, "junit_failures": n}

import groovy.json.JsonOutput
import groovy.json.JsonSlurper

class PipelineError extends RuntimeException {  // error(): the build fails
    PipelineError(String message) { super(message) }
}

class DeclarativeError extends RuntimeException {  // Jenkins would not run the file at all
    DeclarativeError(String message) { super(message) }
}

def ORDER = ['SUCCESS', 'UNSTABLE', 'FAILURE', 'ABORTED']
def DECLARATIVE = [pipeline: ['(top)'], agent: ['pipeline', 'stage'], triggers: ['pipeline'], options: ['pipeline', 'stage'],
                   parameters: ['pipeline'], stages: ['pipeline', 'stage'], stage: ['stages'], steps: ['stage'],
                   post: ['pipeline', 'stage'], always: ['post'], script: ['steps']]
def jenkinsfile = new File(args[0]).text
def scenarios = new JsonSlurper().parse(new File(args[1]))

for (scenario in scenarios) {
    def calls = []
    def build = [result: null]
    def env = [:]
    def worsen = { String r -> if (build.result == null || ORDER.indexOf(r) > ORDER.indexOf(build.result)) build.result = r }
    def record = { String name, Object... a -> calls << [step: name, args: a.collect { it instanceof Closure ? '{}' : it.toString() }, env: env.clone()] }
    def stack = ['(top)']  // the declarative sections we are in; 'script' ends the checks
    def children = [:].withDefault { [] }  // section path -> the sections directly in it
    def section = { String name -> { Object... a ->
        record(name, *a)
        if (!stack.contains('script')) {
            if (!DECLARATIVE.containsKey(name) || !(stack[-1] in DECLARATIVE[name])) {
                throw new DeclarativeError("${name} may not stand in ${stack[-1]}")
            }
            children[stack.join('/')] << name
        }
        if (a && a[-1] instanceof Closure) {
            stack << name
            try { a[-1].call() } finally { stack.remove(stack.size() - 1) }
            def path = stack.join('/') + "/${name}"
            if (!stack.contains('script') && name == 'stage' && !children[path].any { it in ['steps', 'stages'] }) {
                throw new DeclarativeError("stage ${a[0]} has no steps")
            }
            if (name == 'pipeline' && !(children[path].containsAll(['agent', 'stages']))) {
                throw new DeclarativeError('the pipeline needs agent and stages')
            }
        }
    } }

    def binding = new Binding()
    binding.setVariable('params', scenario.params)
    binding.setVariable('scm', 'scm')
    binding.setVariable('none', 'none')
    binding.setVariable('currentBuild', build)
    for (name in ['pipeline', 'agent', 'triggers', 'options', 'parameters', 'stages', 'stage', 'steps', 'script',
                  'node', 'post', 'always']) {
        binding.setVariable(name, section(name))
    }
    for (name in ['cron', 'string', 'buildDiscarder', 'logRotator', 'disableConcurrentBuilds', 'timeout', 'label',
                  'checkout', 'stash', 'unstash', 'archiveArtifacts', 'echo']) {
        binding.setVariable(name, { String n -> { Object... a -> record(n, *a); n } }(name))
    }
    binding.setVariable('withEnv', { List vars, Closure body ->
        record('withEnv', vars.join(' '))
        def saved = env.clone()
        vars.each { def kv = it.toString().split('=', 2); env[kv[0]] = kv[1] }
        try { body.call() } finally { env.clear(); env.putAll(saved) }
    })
    binding.setVariable('parallel', { Map branches -> record('parallel', branches.keySet().join(',')); branches.values().each { it.call() } })
    binding.setVariable('sh', { Object a ->
        if (!(a instanceof Map)) { record('sh', a); return 0 }
        def script = a.script.toString()
        record('sh', "returnStatus=${a.returnStatus}", script.readLines().find { it.contains('kstress ') } ?: script)
        if (a.returnStatus != true) throw new PipelineError("sh without returnStatus: ${script}")
        if (script.contains('kstress soak')) return scenario.soak[(env.SHARD.split('/')[0] as Integer) - 1]
        if (script.contains('kstress merge')) return scenario.merge
        throw new PipelineError("unexpected script: ${script}")
    })
    binding.setVariable('junit', { Map a -> record('junit', a); if (scenario.junit_failures) worsen('UNSTABLE') })
    binding.setVariable('unstable', { String m -> record('unstable', m); worsen('UNSTABLE') })
    binding.setVariable('error', { String m -> record('error', m); throw new PipelineError(m) })

    def error = null
    try {
        new GroovyShell(binding).evaluate(jenkinsfile, 'Jenkinsfile')
    } catch (PipelineError e) {
        error = e.message
        worsen('FAILURE')
    }
    println JsonOutput.toJson([result: build.result ?: 'SUCCESS', error: error, calls: calls])
}
