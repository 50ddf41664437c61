// The syncmesh console: one page, no dependencies, every value from the node
// rendered as text (never as HTML), the token in session storage only.
const TOKEN_KEY = 'syncmesh-token'
const POLL_MS = 2000

const state = { token: '', readOnly: false, platforms: [], timer: 0, feed: undefined, prev: new Map(), modes: undefined }

// -- DOM ------------------------------------------------------------------

function h (tag, attrs = {}, ...children) {
  const el = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v)
    else if (k === 'text') el.textContent = String(v)
    else el.setAttribute(k, v === true ? '' : String(v))
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue
    el.append(c instanceof Node ? c : document.createTextNode(String(c)))
  }
  return el
}

function table (headers, rows, label) {
  return h('table', { 'aria-label': label },
    h('thead', {}, h('tr', {}, headers.map(t => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, rows.length === 0 ? h('tr', {}, h('td', { colspan: headers.length, class: 'muted' }, 'none')) : rows.map(r => h('tr', {}, r.map(c => h('td', {}, c))))))
}

function toast (text, bad = false) {
  const el = document.getElementById('toast')
  el.textContent = text
  el.className = 'show' + (bad ? ' bad' : '')
  clearTimeout(toast.t)
  toast.t = setTimeout(() => { el.className = '' }, 5000)
}

const main = () => document.getElementById('main')

function fmtCount (n) { return Number(n ?? 0).toLocaleString('en') }
function fmtBytes (n) {
  n = Number(n ?? 0)
  const u = ['B', 'KiB', 'MiB', 'GiB']
  let i = 0
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++ }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${u[i]}`
}
function fmtAgo (iso) {
  if (!iso) return 'never'
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000))
  if (s < 60) return `${s} s ago`
  if (s < 3600) return `${Math.round(s / 60)} min ago`
  return `${Math.round(s / 3600)} h ago`
}

// -- API ------------------------------------------------------------------

async function api (method, path, body) {
  const res = await fetch(path, {
    method,
    headers: { authorization: `Bearer ${state.token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    body: body !== undefined ? JSON.stringify(body) : undefined
  })
  const text = await res.text()
  let data
  try { data = text ? JSON.parse(text) : undefined } catch { data = text }
  if (!res.ok) {
    const err = new Error(data?.error ? `${data.error.code}: ${data.error.message}` : `HTTP ${res.status}`)
    err.status = res.status
    throw err
  }
  return data
}

function platformName (peerId) {
  return state.platforms.find(p => p.peerId === peerId)?.name
}

// -- token ------------------------------------------------------------------

function takeToken () {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash)
  if (m) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]))
    // out of the address bar and the history
    history.replaceState(null, '', location.pathname + '#/overview')
  }
  state.token = sessionStorage.getItem(TOKEN_KEY) ?? ''
}

function loginScreen (message) {
  const input = h('input', { id: 'token', type: 'password', autocomplete: 'off', size: 70 })
  main().replaceChildren(
    h('h2', {}, 'Sign in'),
    h('p', {}, message ?? 'Open the URL that "syncmesh console --data DIR" prints, or paste the API token.'),
    h('form', { class: 'row', onsubmit: (e) => { e.preventDefault(); sessionStorage.setItem(TOKEN_KEY, input.value.trim()); state.token = input.value.trim(); route() } },
      h('label', { for: 'token' }, 'API token'), input, h('button', { type: 'submit' }, 'Sign in')))
}

// -- screens ------------------------------------------------------------------

async function overview () {
  const [s, platforms] = await Promise.all([api('GET', '/v1/status'), api('GET', '/v1/platforms')])
  state.platforms = platforms
  document.getElementById('node-title').textContent = `${s.name}${s.region ? ` (${s.region})` : ''}`
  const lag = s.origins.reduce((a, o) => a + o.lag, 0)
  const now = Date.now()
  const rate = (key, value) => {
    const prev = state.prev.get(key)
    state.prev.set(key, { value, at: now })
    if (!prev || now <= prev.at) return ''
    return `${fmtCount(Math.max(0, Math.round((value - prev.value) * 1000 / (now - prev.at))))}/s`
  }
  const region = (peerId) => state.platforms.find(p => p.peerId === peerId)?.region ?? ''
  main().replaceChildren(
    h('h2', {}, 'This node'),
    h('div', { class: 'cards' },
      h('div', { class: 'card' }, h('div', { class: 'muted' }, 'name'), h('div', { class: 'v', id: 'node-name' }, s.name)),
      h('div', { class: 'card' }, h('div', { class: 'muted' }, 'region'), h('div', { class: 'v' }, s.region ?? '—')),
      h('div', { class: 'card' }, h('div', { class: 'muted' }, 'up since'), h('div', { class: 'v' }, new Date(s.startedAt).toLocaleString())),
      h('div', { class: 'card' }, h('div', { class: 'muted' }, 'caught up'), h('div', { class: 'v ' + (s.caughtUp && lag === 0 ? 'ok' : 'warn'), id: 'caught-up' }, s.caughtUp && lag === 0 ? 'yes' : `no (${fmtCount(lag)} behind)`)),
      h('div', { class: 'card' }, h('div', { class: 'muted' }, 'peer id'), h('div', {}, h('code', {}, s.peerId)))),
    h('h2', {}, `Peers (${s.peers.filter(p => p.connected).length} of ${s.peers.length} connected)`),
    table(['platform', 'region', 'state', 'last seen (key proved)', 'last traffic', 'in', 'out', 'error'], s.peers.map(p => [
      p.platform ?? platformName(p.peerId) ?? h('code', {}, p.peerId.slice(0, 16) + '…'),
      p.region ?? region(p.peerId),
      h('span', { class: p.connected && p.authenticated ? 'ok' : 'bad' }, p.connected ? (p.authenticated ? 'connected' : 'unauthenticated') : 'disconnected'),
      fmtAgo(p.lastSeen),
      fmtAgo(p.lastTraffic),
      `${fmtCount(p.entriesReceived)} entries, ${fmtBytes(p.bytesReceived)} ${rate('in' + p.peerId, p.entriesReceived)}`,
      `${fmtCount(p.entriesSent)} entries, ${fmtBytes(p.bytesSent)} ${rate('out' + p.peerId, p.entriesSent)}`,
      p.lastError ?? ''
    ]), 'Peers'),
    h('h2', {}, 'Origins'),
    table(['origin', 'held', 'announced', 'lag', 'stall'], s.origins.map(o => [
      o.platform ?? h('code', {}, o.origin.slice(0, 16) + '…'),
      fmtCount(o.seq), fmtCount(o.announced),
      h('span', { class: o.lag > 0 ? 'warn' : 'ok' }, fmtCount(o.lag)),
      o.stuck ? h('span', { class: 'bad' }, `stalled since ${fmtAgo(o.stuck.since)}, waiting on ${platformName(o.stuck.peer) ?? o.stuck.peer.slice(0, 16)}`) : ''
    ]), 'Origins'),
    ...connectorsSection(s.connectors ?? [], rate))
}

/** The application tables this node syncs (docs/connectors.md); nothing when it has none. */
function connectorsSection (connectors, rate) {
  if (connectors.length === 0) return []
  const arrow = (d) => d === 'in' ? '←' : d === 'out' ? '→' : '↔'
  return [
    h('h2', {}, `Connectors (${connectors.length})`),
    table(['table', 'collection', 'state', 'outbox lag', 'captured', 'applied', 'skipped fields', 'refused rows', 'last error'], connectors.map(c => [
      h('span', { title: c.db }, `${c.kind}: ${c.table}`),
      `${arrow(c.direction)} ${c.collection}`,
      h('span', { class: c.running && c.errors === 0 ? 'ok' : c.running ? 'warn' : 'bad' }, c.running ? 'running' : 'stopped'),
      c.direction === 'in' ? '—' : h('span', { class: c.lag > 0 ? 'warn' : 'ok' }, fmtCount(c.lag)),
      `${fmtCount(c.captured)} ${rate('cap' + c.id, c.captured)}`,
      `${fmtCount(c.applied)} ${rate('app' + c.id, c.applied)}`,
      fmtCount(c.skippedFields),
      c.refusedRows > 0 ? h('span', { class: 'warn', title: c.lastRefused ? `last: ${c.lastRefused.id}: ${c.lastRefused.message}` : '' }, fmtCount(c.refusedRows)) : '0',
      c.lastError ? h('span', { class: 'bad' }, `${fmtAgo(c.lastError.at)}: ${c.lastError.message}`) : ''
    ]), 'Connectors')
  ]
}

async function platformsScreen () {
  const [platforms, s] = await Promise.all([api('GET', '/v1/platforms'), api('GET', '/v1/status')])
  state.platforms = platforms
  const peer = (id) => s.peers.find(p => p.peerId === id)
  const name = h('input', { id: 'p-name', required: true })
  const peerId = h('input', { id: 'p-peer', required: true, size: 56 })
  const regionIn = h('input', { id: 'p-region' })
  const tags = h('input', { id: 'p-tags', placeholder: 'edge, eu' })
  main().replaceChildren(
    h('h2', {}, 'Platforms'),
    table(['name', 'peer id', 'region', 'tags', 'state', 'last seen', ''], platforms.map(p => {
      const info = peer(p.peerId)
      return [p.name, h('code', {}, p.peerId), p.region ?? '', (p.tags ?? []).join(', '),
        p.revoked ? h('span', { class: 'bad' }, 'revoked') : p.peerId === s.peerId ? h('span', { class: 'ok' }, 'this node') : info?.connected ? h('span', { class: 'ok' }, 'online') : h('span', { class: 'muted' }, 'offline'),
        p.peerId === s.peerId ? '' : fmtAgo(info?.lastSeen),
        p.revoked || p.peerId === s.peerId || state.readOnly ? '' : h('button', { class: 'danger', 'aria-label': `Revoke ${p.name}`, onclick: async () => {
          if (!confirm(`Revoke ${p.name} on every node? This cannot be undone.`)) return
          await act(() => api('POST', `/v1/platforms/${encodeURIComponent(p.name)}/revoke`, {}), `revoked ${p.name}`)
        } }, 'Revoke')]
    }), 'Platforms'),
    state.readOnly ? '' : h('h2', {}, 'Add a platform'),
    state.readOnly ? '' : h('form', { class: 'grid', onsubmit: async (e) => {
      e.preventDefault()
      const body = { name: name.value.trim(), peerId: peerId.value.trim(), ...(regionIn.value.trim() ? { region: regionIn.value.trim() } : {}), ...(tags.value.trim() ? { tags: tags.value.split(',').map(t => t.trim()).filter(Boolean) } : {}) }
      await act(() => api('POST', '/v1/platforms', body), `added ${body.name}`)
    } },
    h('label', { for: 'p-name' }, 'Name'), name,
    h('label', { for: 'p-peer' }, 'Peer id'), peerId,
    h('label', { for: 'p-region' }, 'Region'), regionIn,
    h('label', { for: 'p-tags' }, 'Tags (comma-separated)'), tags,
    h('div', { class: 'full' }, h('button', { type: 'submit' }, 'Add platform'))))
}

/** Run an action, say how it went, and redraw. */
async function act (fn, done) {
  try {
    await fn()
    toast(done)
    await route()
  } catch (err) {
    toast(err.message, true)
  }
}

function list (text) {
  return text.split(',').map(t => t.trim()).filter(Boolean)
}

/** The rule modes the node accepts, from its OpenAPI document (the node's own schema of a rule). */
async function ruleModes () {
  state.modes ??= (await api('GET', '/v1/openapi.json')).paths['/v1/rules'].post.requestBody.content['application/json'].schema.properties.mode.enum
  return state.modes
}

/** "P:c", "region=R:c", "tag=T:c" or "*:c" as a rule's source or target. */
function parseEndpoint (text) {
  const value = text.trim()
  const i = value.lastIndexOf(':')
  const selector = value.slice(0, i)
  const out = { collection: value.slice(i + 1) }
  if (selector.startsWith('region=')) out.region = selector.slice(7)
  else if (selector.startsWith('tag=')) out.tag = selector.slice(4)
  else out.platform = selector
  return out
}

/** A rule's source or target as written on the command line. */
function fmtEndpoint (e) {
  return `${e.region !== undefined ? `region=${e.region}` : e.tag !== undefined ? `tag=${e.tag}` : e.platform ?? '?'}:${e.collection}`
}

function ruleForm (modes) {
  const f = {}
  const field = (id, label, el) => { f[id] = el; el.id = `r-${id}`; return [h('label', { for: `r-${id}` }, label), el] }
  const report = h('div', { id: 'dry-run', 'aria-live': 'polite' })
  const spec = () => {
    const body = { from: parseEndpoint(f.from.value), to: parseEndpoint(f.to.value), mode: f.mode.value }
    if (f.where.value.trim()) body.where = JSON.parse(f.where.value)
    if (f.include.value.trim()) body.include = list(f.include.value)
    if (f.exclude.value.trim()) body.exclude = list(f.exclude.value)
    if (f.rename.value.trim()) body.rename = Object.fromEntries(list(f.rename.value).map(p => p.split('=').map(s => s.trim())))
    if (f.key.value.trim()) body.key = f.key.value.trim()
    if (f.transform.value.trim()) body.transform = f.transform.value.trim()
    if (f.targetsField.value.trim()) body.targetsField = f.targetsField.value.trim()
    if (f.webhook.value.trim()) body.webhook = { url: f.webhook.value.trim(), secretRef: f.secretRef.value.trim() }
    return body
  }
  const mode = h('select', {}, modes.map(m => h('option', { value: m }, m)))
  const form = h('form', { class: 'grid', 'aria-label': 'New rule', onsubmit: (e) => e.preventDefault() },
    field('from', 'From (platform:collection) or region=R:…, tag=T:…, *:…', h('input', { required: true, placeholder: 'staging:posts' })),
    field('to', 'To (platform, region=R, tag=T or *, then :collection)', h('input', { required: true, placeholder: 'production:posts' })),
    field('mode', 'Mode', mode),
    field('where', 'Filter (where, JSON)', h('textarea', { placeholder: '{"status":"published"}' })),
    field('include', 'Include fields', h('input', { placeholder: 'title, body' })),
    field('exclude', 'Exclude fields', h('input', { placeholder: 'internal_notes' })),
    field('rename', 'Rename (old=new, …)', h('input', { placeholder: 'body=content' })),
    field('key', 'Key field', h('input', { placeholder: 'slug' })),
    field('transform', 'Transform module', h('input', { placeholder: 'slug.mjs' })),
    field('targetsField', 'Targets field', h('input', {})),
    field('webhook', 'Webhook URL', h('input', { type: 'url' })),
    field('secretRef', 'Webhook secret name (in the targets\' config.json webhooks.secrets)', h('input', { placeholder: 'orders' })),
    field('force', 'Save even when a platform it names is not in the registry (it does nothing until that platform joins)', h('input', { type: 'checkbox' })),
    h('div', { class: 'full row' },
      h('button', { type: 'button', class: 'secondary', onclick: async () => {
        try {
          const r = await api('POST', '/v1/rules', { ...spec(), dryRun: true })
          report.replaceChildren(h('h2', {}, 'Dry run'),
            h('p', {}, `source ${r.source.platform}:${r.source.collection}: ${fmtCount(r.source.records)} records${r.source.complete ? '' : ' (this node does not hold the whole source log)'}`),
            table(['target', 'matching', 'creates', 'updates', 'deletes', 'unchanged', 'conflicts', 'errors', 'exact', 'note'], r.targets.map(t => [
              `${t.platform ?? ''}:${t.collection ?? ''}`, fmtCount(t.matching), fmtCount(t.creates), fmtCount(t.updates), fmtCount(t.deletes), fmtCount(t.unchanged), fmtCount(t.conflicts), fmtCount(t.errors), t.exact ? 'yes' : 'no', t.note ?? ''
            ]), 'Dry run by target'))
        } catch (err) { toast(err.message, true) }
      } }, 'Dry run'),
      h('button', { type: 'button', onclick: async () => {
        try { await act(() => api('POST', '/v1/rules', f.force.checked ? { ...spec(), force: true } : spec()), 'rule saved') } catch (err) { toast(err.message, true) }
      } }, 'Save rule')),
    h('div', { class: 'full' }, report))
  return form
}

async function rulesScreen () {
  const [rules, s, modes] = await Promise.all([api('GET', '/v1/rules'), api('GET', '/v1/status'), ruleModes()])
  const st = (id) => s.rules.find(r => r.id === id)
  const detail = h('div', { id: 'rule-detail' })
  main().replaceChildren(
    h('h2', {}, 'Rules'),
    table(['rule', 'from → to', 'mode', 'state', 'applied', 'pending', 'conflicts', 'errors', 'backfill', 'problem', ''], rules.map(r => {
      const x = st(r.id) ?? {}
      return [h('code', {}, r.id), `${x.from ?? fmtEndpoint(r.from)}${x.sources ? ` (${x.sources.map(s => s.platform).join(', ') || 'none now'})` : ''} → ${x.to ?? x.target ?? ''}`, r.mode,
        r.paused ? h('span', { class: 'warn' }, 'paused') : h('span', { class: 'ok' }, 'running'),
        fmtCount(x.applied), fmtCount(x.pending), fmtCount(x.conflicts), fmtCount(x.transformErrors),
        x.backfilled ? 'done' : (x.local ? (x.catchingUp ? 'catching up' : (x.backfillPhase ?? 'running')) : '—'),
        x.problem ? h('span', { class: 'bad' }, x.problem) : (x.waitingForKey ? h('span', { class: 'bad' }, `waiting for the stream key of ${x.waitingForKey.join(', ')}`) : ''),
        h('span', { class: 'row' },
          state.readOnly ? '' : h('button', { class: 'secondary', 'aria-label': `${r.paused ? 'Resume' : 'Pause'} rule ${r.id}`, onclick: async () => {
            await act(() => api('POST', `/v1/rules/${r.id}/${r.paused ? 'resume' : 'pause'}`), `${r.paused ? 'resumed' : 'paused'} rule ${r.id}`)
          } }, r.paused ? 'Resume' : 'Pause'),
          h('button', { class: 'secondary', 'aria-label': `Conflicts and errors of ${r.id}`, onclick: async () => {
            const [c, e] = await Promise.all([api('GET', `/v1/rules/${r.id}/conflicts?limit=50`), api('GET', `/v1/rules/${r.id}/errors?limit=50`)])
            detail.replaceChildren(h('h2', {}, `Rule ${r.id}`), h('pre', {}, JSON.stringify(r, null, 2)),
              h('h2', {}, `Conflicts (${c.total})`), table(['record', 'winner', 'at'], c.conflicts.map(k => [`${k.collection ?? ''}/${k.id ?? ''}`, k.winner ?? '', k.at ?? '']), 'Conflicts'),
              h('h2', {}, `Transform errors (${e.total})`), table(['record', 'error', 'at'], e.errors.map(k => [`${k.collection ?? ''}/${k.id ?? ''}`, k.error ?? k.message ?? '', k.at ?? '']), 'Transform errors'))
          } }, 'Details'),
          state.readOnly ? '' : h('button', { class: 'danger', 'aria-label': `Delete rule ${r.id}`, onclick: async () => {
            if (!confirm(`Delete rule ${r.id}? What it wrote stays.`)) return
            await act(() => api('DELETE', `/v1/rules/${r.id}`), `deleted rule ${r.id}`)
          } }, 'Delete'))]
    }), 'Rules'),
    detail,
    state.readOnly ? '' : h('h2', {}, 'New rule'),
    state.readOnly ? '' : ruleForm(modes))
}

async function dataScreen (params) {
  // the registry's own collections ($platforms, $rules) have screens of their own
  const collections = (await api('GET', '/v1/collections')).collections.filter(c => !c.startsWith('$'))
  const collection = params.get('c') ?? collections[0]
  const after = params.get('after') ?? undefined
  const select = h('select', { id: 'collection', onchange: () => { location.hash = `#/data?c=${encodeURIComponent(select.value)}` } },
    collections.map(c => h('option', { value: c, selected: c === collection }, c)))
  const search = h('input', { id: 'record-id', placeholder: 'record id' })
  const editor = h('div', { id: 'editor' })
  const feed = h('pre', { id: 'feed', 'aria-label': 'Changes feed' })
  const open = async (id) => {
    try {
      const rec = await api('GET', `/v1/collections/${encodeURIComponent(collection)}/records/${encodeURIComponent(id)}`)
      const text = h('textarea', { id: 'record-json', rows: 12, cols: 80, 'aria-label': `JSON of ${id}` })
      text.value = JSON.stringify(rec.value, null, 2)
      editor.replaceChildren(h('h2', {}, `${collection}/${id}`), h('p', { class: 'muted' }, `version ${JSON.stringify(rec.version)}`), text,
        state.readOnly ? '' : h('div', { class: 'row' },
          h('button', { onclick: async () => {
            let value
            try { value = JSON.parse(text.value) } catch (err) { toast(`not JSON: ${err.message}`, true); return }
            await act(() => api('PUT', `/v1/collections/${encodeURIComponent(collection)}/records/${encodeURIComponent(id)}`, value), `saved ${id}`)
          } }, 'Save record'),
          h('button', { class: 'danger', onclick: async () => {
            if (!confirm(`Delete ${collection}/${id}?`)) return
            await act(() => api('DELETE', `/v1/collections/${encodeURIComponent(collection)}/records/${encodeURIComponent(id)}`), `deleted ${id}`)
          } }, 'Delete record')))
    } catch (err) { toast(err.message, true) }
  }
  let page = { records: [] }
  if (collection) page = await api('GET', `/v1/collections/${encodeURIComponent(collection)}/records?limit=50${after ? `&after=${encodeURIComponent(after)}` : ''}`)
  main().replaceChildren(
    h('h2', {}, 'Data'),
    h('div', { class: 'row' }, h('label', { for: 'collection' }, 'Collection'), select,
      h('form', { class: 'row', onsubmit: (e) => { e.preventDefault(); open(search.value.trim()) } }, h('label', { for: 'record-id' }, 'Find by id'), search, h('button', { type: 'submit' }, 'Open'))),
    collection ? table(['id', 'value', 'version'], page.records.map(r => [
      h('a', { href: '#', onclick: (e) => { e.preventDefault(); open(r.id) } }, r.id),
      JSON.stringify(r.value).slice(0, 120), `${r.version.origin?.slice(0, 12) ?? ''} ${r.version.hlc ?? ''}`
    ]), `Records of ${collection}`) : h('p', { class: 'muted' }, 'No collections yet.'),
    page.next ? h('div', { class: 'row' }, h('a', { href: `#/data?c=${encodeURIComponent(collection)}&after=${encodeURIComponent(page.next)}` }, 'Next page')) : '',
    editor,
    h('h2', {}, 'Changes (live)'), feed)
  followFeed(feed, collection)
}

/** The changes feed from now on, streamed with fetch (EventSource cannot send the token). */
function followFeed (pre, collection) {
  state.feed?.abort()
  const ctl = new AbortController()
  state.feed = ctl
  const q = `/v1/changes?since=now&follow=true&heartbeat=10${collection ? `&collection=${encodeURIComponent(collection)}` : ''}`
  fetch(q, { headers: { authorization: `Bearer ${state.token}` }, signal: ctl.signal }).then(async (res) => {
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader()
    let buf = ''
    for (;;) {
      const { value, done } = await reader.read()
      if (done) break
      buf += value
      let i
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i)
        buf = buf.slice(i + 1)
        if (!line) continue
        const c = JSON.parse(line)
        if (c.type !== 'change') continue
        pre.textContent = `${c.cursor} ${c.op} ${c.collection}/${c.id}${c.ruleId ? ` (rule ${c.ruleId})` : ''}\n` + pre.textContent.slice(0, 20000)
      }
    }
  }).catch(() => {})
}

function chart (samples, series, label) {
  const w = 600
  const hgt = 160
  const values = series.flatMap(s => samples.map(s.get))
  const max = Math.max(1, ...values)
  const x = (i) => samples.length <= 1 ? 0 : (i * w) / (samples.length - 1)
  const y = (v) => hgt - (v / max) * (hgt - 10)
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg')
  svg.setAttribute('viewBox', `0 0 ${w} ${hgt}`)
  svg.setAttribute('class', 'chart')
  svg.setAttribute('role', 'img')
  svg.setAttribute('aria-label', `${label}, last hour, peak ${Math.round(max)}`)
  svg.setAttribute('preserveAspectRatio', 'none')
  for (const s of series) {
    const line = document.createElementNS('http://www.w3.org/2000/svg', 'polyline')
    line.setAttribute('points', samples.map((d, i) => `${x(i).toFixed(1)},${y(s.get(d)).toFixed(1)}`).join(' '))
    line.setAttribute('stroke', s.color)
    svg.append(line)
  }
  return h('div', {}, h('h2', {}, label), svg, h('div', { class: 'legend' }, series.map(s => h('span', {}, `${s.name}: peak ${fmtCount(Math.round(Math.max(0, ...samples.map(s.get))))}`))))
}

async function chartsScreen () {
  const { intervalMs, samples } = await api('GET', '/v1/status/history')
  const perSec = (key) => samples.map((d, i) => i === 0 ? 0 : Math.max(0, (d[key] - samples[i - 1][key]) * 1000 / intervalMs))
  const rows = samples.map((d, i) => ({ ...d, inRate: perSec('entriesIn')[i], outRate: perSec('entriesOut')[i] }))
  main().replaceChildren(
    h('p', { class: 'muted' }, `${samples.length} samples, one every ${intervalMs / 1000} s (the node keeps the last hour).`),
    chart(rows, [{ name: 'entries in per second', color: '#2457c5', get: d => d.inRate }, { name: 'entries out per second', color: '#067647', get: d => d.outRate }], 'Sync throughput'),
    chart(rows, [{ name: 'entries behind', color: '#b54708', get: d => d.lag }], 'Lag'))
}

// -- routing ----------------------------------------------------------------

const screens = { overview, platforms: platformsScreen, rules: rulesScreen, data: dataScreen, charts: chartsScreen }
const live = new Set(['overview'])

async function route () {
  clearTimeout(state.timer)
  if (!state.token) return loginScreen()
  const [path, query] = (location.hash.replace(/^#\/?/, '') || 'overview').split('?')
  const name = screens[path] ? path : 'overview'
  if (name !== 'data') state.feed?.abort()
  for (const a of document.querySelectorAll('nav a')) {
    if (a.dataset.screen === name) a.setAttribute('aria-current', 'page')
    else a.removeAttribute('aria-current')
  }
  try {
    await screens[name](new URLSearchParams(query ?? ''))
  } catch (err) {
    if (err.status === 401) { sessionStorage.removeItem(TOKEN_KEY); state.token = ''; return loginScreen('The token was refused (rotated?): sign in again.') }
    main().replaceChildren(h('p', { class: 'bad' }, err.message))
  }
  if (live.has(name)) state.timer = setTimeout(route, POLL_MS)
}

async function boot () {
  takeToken()
  if (state.token) {
    try {
      state.readOnly = (await api('GET', '/v1/access')).access === 'read-only'
    } catch {}
    document.getElementById('access').textContent = state.readOnly ? 'read-only' : ''
  }
  window.addEventListener('hashchange', route)
  await route()
}

boot()
