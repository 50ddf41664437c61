/**
 * Length-prefixed frames over a libp2p v3 stream: an unsigned varint length,
 * then that many bytes. Reads enforce a maximum frame size; writes wait for
 * the stream's `drain` event when its buffer is full.
 */
import type { Stream } from '@libp2p/interface'
import { LengthPrefixedDecoder } from '@libp2p/utils'
import { ProtocolError } from '../core/errors.js'

export function varintLength (n: number): number {
  let len = 1
  while (n >= 0x80) {
    n = Math.floor(n / 128)
    len++
  }
  return len
}

export function writeVarint (buf: Uint8Array, offset: number, n: number): number {
  while (n >= 0x80) {
    buf[offset++] = (n & 0x7f) | 0x80
    n = Math.floor(n / 128)
  }
  buf[offset++] = n
  return offset
}

/** Prefix `payload` with its varint length in one flat buffer. */
export function frame (payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(varintLength(payload.byteLength) + payload.byteLength)
  const offset = writeVarint(out, 0, payload.byteLength)
  out.set(payload, offset)
  return out
}

export class FramedStream {
  readonly stream: Stream
  private readonly maxFrame: number

  constructor (stream: Stream, maxFrame: number) {
    this.stream = stream
    this.maxFrame = maxFrame
  }

  /** Frames as they arrive; throws ProtocolError on an oversized frame. */
  async * frames (): AsyncGenerator<Uint8Array> {
    const decoder = new LengthPrefixedDecoder({ maxDataLength: this.maxFrame, maxBufferSize: this.maxFrame * 2 })
    for await (const chunk of this.stream) {
      let frames
      try {
        frames = [...decoder.decode(chunk)]
      } catch (err) {
        throw new ProtocolError(`malformed or oversized frame (limit ${this.maxFrame} bytes): ${(err as Error).message}`, 'FRAME_INVALID')
      }
      for (const f of frames) yield f.subarray()
    }
  }

  /** Send one already-framed buffer, waiting for drain if the stream asks us to. */
  async write (framed: Uint8Array): Promise<void> {
    if (this.stream.send(framed)) return
    await new Promise<void>((resolve, reject) => {
      const cleanup = (): void => {
        this.stream.removeEventListener('drain', onDrain)
        this.stream.removeEventListener('close', onClose)
      }
      const onDrain = (): void => { cleanup(); resolve() }
      const onClose = (): void => { cleanup(); reject(new Error('stream closed while waiting to send')) }
      this.stream.addEventListener('drain', onDrain)
      this.stream.addEventListener('close', onClose)
    })
  }

  /**
   * Send without waiting (small control frames); false when the buffer is
   * full or the stream is no longer writable (the peer closed or reset it:
   * the session ends through its read side, never by a throw from a timer).
   */
  sendNow (framed: Uint8Array): boolean {
    if (this.stream.writeStatus !== 'writable') return false
    try {
      return this.stream.send(framed)
    } catch {
      return false
    }
  }
}
