// Cluster DNS for Node processes a node agent starts (ours: the testing cluster has no
// DNS server). Loaded with NODE_OPTIONS=--require <this file>: dns.lookup (what net,
// http and https use) looks Service names up in $AGLAIS_CLUSTER_DNS_FILE, as in a pod of
// $AGLAIS_POD_NAMESPACE, before the normal resolver. Same rules as resolver.py.
'use strict';
const dns = require('dns');
const fs = require('fs');

const file = process.env.AGLAIS_CLUSTER_DNS_FILE;
const namespace = process.env.AGLAIS_POD_NAMESPACE || '';
const DOMAIN = 'cluster.local';
const SERVICE = /^([a-z0-9]([a-z0-9-]*[a-z0-9])?)\.([a-z0-9]([a-z0-9-]*[a-z0-9])?)\.svc\.cluster\.local$/;
let cache = { stamp: null, services: {} };

function services() {
  if (!file) return {};
  try {
    const info = fs.statSync(file);
    const stamp = `${info.mtimeMs}/${info.size}`;
    if (stamp !== cache.stamp) {
      cache = { stamp, services: JSON.parse(fs.readFileSync(file, 'utf8')).services || {} };
    }
  } catch (error) { /* missing or being replaced: keep the last one */ }
  return cache.services;
}

function candidates(host) {
  const name = host.toLowerCase();
  if (name.endsWith('.')) return [name.slice(0, -1)];
  const search = [...(namespace ? [`${namespace}.svc.${DOMAIN}`] : []), `svc.${DOMAIN}`, DOMAIN];
  const expanded = search.map((domain) => `${name}.${domain}`);
  return (name.split('.').length - 1) >= 5 ? [name, ...expanded] : [...expanded, name];
}

// the addresses, [] for a cluster name that does not exist, null for any other name
function clusterLookup(host) {
  if (typeof host !== 'string' || !host || /^[0-9.]+$/.test(host) || host.includes(':')) return null;
  const known = services();
  for (const fqdn of candidates(host)) {
    const match = SERVICE.exec(fqdn);
    if (!match) continue;
    const entry = known[`${match[3]}/${match[1]}`];
    if (!entry) continue;
    if (entry.clusterIP && entry.clusterIP !== 'None') return [entry.clusterIP];
    return [...(entry.ips || [])];
  }
  const name = host.toLowerCase().replace(/\.$/, '');
  return (name === DOMAIN || name.endsWith(`.${DOMAIN}`)) ? [] : null;
}

function notFound(host) {
  const error = new Error(`getaddrinfo ENOTFOUND ${host}`);
  Object.assign(error, { code: 'ENOTFOUND', errno: -3008, syscall: 'getaddrinfo', hostname: host });
  return error;
}

function wanted(ips, family) {
  return family === 6 ? [] : ips;  // Service addresses here are IPv4
}

const realLookup = dns.lookup;
dns.lookup = function lookup(hostname, options, callback) {
  if (typeof options === 'function') { callback = options; options = {}; }
  if (typeof options === 'number') options = { family: options };
  options = options || {};
  const found = clusterLookup(hostname);
  if (found === null) return realLookup.call(dns, hostname, options, callback);
  const ips = wanted(found, options.family === 'IPv6' ? 6 : options.family);
  process.nextTick(() => {
    if (!ips.length) return callback(notFound(hostname));
    if (options.all) return callback(null, ips.map((address) => ({ address, family: 4 })));
    return callback(null, ips[0], 4);
  });
  return {};
};

if (dns.promises && dns.promises.lookup) {
  const realPromise = dns.promises.lookup;
  dns.promises.lookup = async function lookup(hostname, options) {
    if (typeof options === 'number') options = { family: options };
    options = options || {};
    const found = clusterLookup(hostname);
    if (found === null) return realPromise.call(dns.promises, hostname, options);
    const ips = wanted(found, options.family === 'IPv6' ? 6 : options.family);
    if (!ips.length) throw notFound(hostname);
    if (options.all) return ips.map((address) => ({ address, family: 4 }));
    return { address: ips[0], family: 4 };
  };
}
