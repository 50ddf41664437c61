/**
 * The webhook allow list (src/rules/webhook-policy.ts) and the rule's webhook
 * fields: which entries parse, which hosts and resolved addresses they allow,
 * and how a rule names its secret (an inline secret only survives on rules
 * that already carry it).
 */
import { describe, expect, it } from 'vitest'
import { applyRulePatch, parseRuleSpec, redactRule, Registry } from '../../src/registry/registry.js'
import { configSchema } from '../../src/node/config.js'
import type { Rule } from '../../src/core/types.js'
import { isPublicAddress, parseAllowEntry, WebhookPolicy } from '../../src/rules/webhook-policy.js'

describe('webhook allow list', () => {
  it('parses names, ports, addresses, ranges and "*", and refuses anything else', () => {
    expect(parseAllowEntry('Hooks.Example.com')).toMatchObject({ kind: 'name', host: 'hooks.example.com' })
    expect(parseAllowEntry('hooks.example.com:8443')).toMatchObject({ kind: 'name', host: 'hooks.example.com', port: 8443 })
    expect(parseAllowEntry('10.0.0.5:8080')).toMatchObject({ kind: 'address', host: '10.0.0.5', port: 8080 })
    expect(parseAllowEntry('[fd00::5]:8080')).toMatchObject({ kind: 'address', host: 'fd00::5', port: 8080 })
    expect(parseAllowEntry('fd00:0::5')).toMatchObject({ kind: 'address', host: 'fd00::5' })
    expect(parseAllowEntry('10.0.0.0/24')).toMatchObject({ kind: 'range' })
    expect(parseAllowEntry('*')).toMatchObject({ kind: 'any' })
    for (const bad of ['', 'http://x', 'a b', 'x:0', 'x:65536', 'x:port', '10.0.0.0/33', '[10.0.0.1]', 'host/8', '*.example.com']) {
      expect(() => parseAllowEntry(bad), bad).toThrow()
    }
    const bad = configSchema.safeParse({ version: 1, name: 'n', webhooks: { allow: ['ok.example.com', 'not a host'] } })
    expect(bad.success).toBe(false)
    expect(configSchema.safeParse({ version: 1, name: 'n', webhooks: { secrets: { s: 'short' } } }).success).toBe(false)
    expect(configSchema.safeParse({ version: 1, name: 'n', webhooks: { allow: ['*'], secrets: { s: 'x'.repeat(16) }, maxAttempts: 3, timeout: 5 } }).success).toBe(true)
  })

  it('knows public addresses from loopback, private, link-local and reserved ones', () => {
    for (const a of ['8.8.8.8', '1.1.1.1', '2606:4700::1111', '93.184.216.34']) expect(isPublicAddress(a), a).toBe(true)
    for (const a of ['127.0.0.1', '127.255.0.9', '10.1.2.3', '172.16.0.1', '172.31.255.255', '192.168.0.1', '169.254.169.254', '100.64.0.1', '0.0.0.0',
      '224.0.0.1', '255.255.255.255', '::1', '::', 'fe80::1', 'fc00::1', 'fd12::1', '::ffff:127.0.0.1', '::ffff:8.8.8.8', '64:ff9b::a00:1', '2002:a00:1::', 'ff02::1', 'not-an-ip']) {
      expect(isPublicAddress(a), a).toBe(false)
    }
  })

  it('allows a URL by host and port, and a resolved address only when public or listed', () => {
    const policy = new WebhookPolicy(['hooks.example.com', 'api.example.com:8443', '10.0.0.5:8080', '192.168.7.0/24'])
    expect(policy.refuseHost(new URL('https://HOOKS.example.com./x'))).toBeUndefined()
    expect(policy.refuseHost(new URL('https://api.example.com:8443/x'))).toBeUndefined()
    expect(policy.refuseHost(new URL('https://api.example.com/x'))).toMatch(/api\.example\.com:443 is not in this node's "webhooks.allow"/)
    expect(policy.refuseHost(new URL('http://10.0.0.5:8080/'))).toBeUndefined()
    expect(policy.refuseHost(new URL('http://10.0.0.5:9090/'))).toBeDefined()
    expect(policy.refuseHost(new URL('http://192.168.7.9/'))).toBeUndefined()
    expect(policy.refuseHost(new URL('http://evil.example.net/'))).toBeDefined()
    expect(policy.refuseAddress('93.184.216.34', 443)).toBeUndefined()
    expect(policy.refuseAddress('10.0.0.5', 8080)).toBeUndefined()
    expect(policy.refuseAddress('10.0.0.5', 80)).toMatch(/^a loopback, private, link-local or reserved address/)
    expect(policy.refuseAddress('192.168.7.200', 1)).toBeUndefined()
    expect(policy.refuseAddress('127.0.0.1', 80)).toBeDefined()
    expect(new WebhookPolicy([]).refuseHost(new URL('https://hooks.example.com/'))).toMatch(/allows no webhook hosts/)
    const any = new WebhookPolicy(['*'])
    expect(any.refuseHost(new URL('http://anything.example/'))).toBeUndefined()
    expect(any.refuseAddress('169.254.169.254', 80)).toBeDefined()
  })
})

describe('a rule names its webhook secret', () => {
  const base = { from: { platform: 'a', collection: 'x' }, to: { platform: 'b', collection: 'y' } }
  const legacy = { ...base, webhook: { url: 'https://hooks.example.com/h', secret: 's'.repeat(20) } }

  it('refuses a new inline secret or URL credentials, accepts secretRef', () => {
    expect(parseRuleSpec({ ...base, webhook: { url: 'https://hooks.example.com/h', secretRef: 'orders' } }).webhook).toEqual({ url: 'https://hooks.example.com/h', secretRef: 'orders' })
    expect(() => parseRuleSpec(legacy)).toThrow(/replicated in clear/)
    expect(() => parseRuleSpec({ ...base, webhook: { url: 'https://u:p@hooks.example.com/h', secretRef: 'orders' } })).toThrow(/credentials/)
    expect(() => parseRuleSpec({ ...base, webhook: { url: 'https://hooks.example.com/h' } })).toThrow(/secretRef/)
    expect(() => parseRuleSpec({ ...base, webhook: { url: 'https://hooks.example.com/h', secretRef: 'a', secret: 's'.repeat(20) } })).toThrow(/secretRef/)
    expect(() => parseRuleSpec({ ...base, webhook: { url: 'https://hooks.example.com/h', secretRef: '../x' } })).toThrow(/INVALID|secret/i)
  })

  it('keeps reading a rule that carries an inline secret, keeps it through unrelated updates, never adds one', () => {
    const registry = new Registry()
    registry.apply('$rules', 'r-old', { ...legacy, id: 'r-old', mode: 'merge', createdAt: '2026-01-01T00:00:00.000Z' })
    const rule = registry.rule('r-old') as Rule
    expect(rule.webhook).toEqual(legacy.webhook)
    expect(redactRule(rule).webhook).toEqual({ url: legacy.webhook.url, secret: '(redacted)' })
    expect(applyRulePatch(rule, { where: { ok: true } }).webhook).toEqual(legacy.webhook)
    expect(applyRulePatch(rule, { webhook: { url: legacy.webhook.url, secret: '(redacted)' } }).webhook).toEqual(legacy.webhook)
    expect(() => applyRulePatch(rule, { webhook: { url: 'https://other.example.com/', secret: '(redacted)' } })).toThrow(/replicated in clear/)
    expect(applyRulePatch(rule, { webhook: { url: legacy.webhook.url, secretRef: 'orders' } }).webhook).toEqual({ url: legacy.webhook.url, secretRef: 'orders' })
  })
})
