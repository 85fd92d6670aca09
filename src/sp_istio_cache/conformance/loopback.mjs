// Preloaded (`node --import`) into the cache-tests origin server by sp_istio_cache.conformance.
//
// The suite's server calls `server.listen(port)` without a host, and Node then binds every
// interface. This module wraps net.Server.prototype.listen once, before the server's code runs,
// so that any listen() that names no host (and no pipe, fd or handle) binds 127.0.0.1 only.
// An explicit host is left as it is: this module only fills a gap, it never overrides a choice.
import net from 'node:net'

const LOOPBACK = '127.0.0.1'
const originalListen = net.Server.prototype.listen

function isPort (value) {
  return typeof value === 'number' || (typeof value === 'string' && /^[0-9]+$/.test(value))
}

function withLoopbackHost (args) {
  const [first, second] = args
  if (first === undefined || typeof first === 'function') {
    // listen() / listen(callback): an ephemeral port
    return [0, LOOPBACK, ...args.filter(a => a !== undefined)]
  }
  if (isPort(first)) {
    return typeof second === 'string' ? args : [first, LOOPBACK, ...args.slice(1)]
  }
  if (typeof first === 'object' && first !== null) {
    const boundElsewhere = 'path' in first || 'fd' in first || '_handle' in first || 'handle' in first
    if (!boundElsewhere && first.host === undefined) {
      return [{ ...first, host: LOOPBACK }, ...args.slice(1)]
    }
  }
  return args
}

net.Server.prototype.listen = function listenOnLoopback (...args) {
  return originalListen.apply(this, withLoopbackHost(args))
}
