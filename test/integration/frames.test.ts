/**
 * Length-prefixed frames over a real libp2p stream (TCP, Noise, yamux on
 * loopback): a control frame sent after the peer closed the stream is
 * dropped, not thrown (it is sent from timers, where a throw would end the
 * process).
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Stream } from '@libp2p/interface'
import { afterEach, describe, expect, it } from 'vitest'
import { FramedStream, frame } from '../../src/network/frames.js'
import { createHost } from '../../src/network/libp2p.js'
import type { Host } from '../../src/network/libp2p.js'

const PROTOCOL = '/syncmesh-test/frames/1.0.0'

describe('FramedStream', () => {
  const hosts: Host[] = []
  afterEach(async () => {
    for (const h of hosts.splice(0)) await h.stop()
  })

  it('sendNow on a stream the peer closed returns false instead of throwing', async () => {
    const a = await createHost({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'] })
    const b = await createHost({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'] })
    hosts.push(a, b)
    await a.start()
    await b.start()
    const received: Uint8Array[] = []
    let remote: Stream | undefined
    await b.handle(PROTOCOL, (stream) => {
      remote = stream
      ;(async () => { for await (const f of new FramedStream(stream, 1024).frames()) received.push(f) })().catch(() => {}) // ends with the reset below
    })
    const stream = await a.dialProtocol(b.getMultiaddrs()[0], PROTOCOL)
    const framed = new FramedStream(stream, 1024)
    expect(framed.sendNow(frame(new Uint8Array([1, 2, 3])))).toBe(true)
    for (let i = 0; i < 100 && received.length === 0; i++) await new Promise(resolve => setTimeout(resolve, 20))
    expect(received.map(r => [...r])).toEqual([[1, 2, 3]])
    // the peer resets the stream; our side learns it asynchronously
    remote?.abort(new Error('gone'))
    for (let i = 0; i < 100 && stream.writeStatus === 'writable'; i++) await new Promise(resolve => setTimeout(resolve, 20))
    expect(stream.writeStatus).not.toBe('writable')
    expect(() => framed.sendNow(frame(new Uint8Array([4])))).not.toThrow()
    expect(framed.sendNow(frame(new Uint8Array([4])))).toBe(false)
  })
})
