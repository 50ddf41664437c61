import { decodeMessage, encodeMessage, message, streamMessage } from 'protons-runtime'
import { alloc as uint8ArrayAlloc } from 'uint8arrays/alloc'
import type { Codec, DecodeOptions } from 'protons-runtime'
import type { Uint8ArrayList } from 'uint8arraylist'

export interface AuthMessage {
  nonce: Uint8Array<ArrayBuffer>
  proof: Uint8Array<ArrayBuffer>
  error: string
  ok: boolean
}

export namespace AuthMessage {
  let _codec: Codec<AuthMessage>

  export const codec = (): Codec<AuthMessage> => {
    if (_codec == null) {
      _codec = message<AuthMessage>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.nonce != null && obj.nonce.byteLength > 0)) {
          w.uint32(10)
          w.bytes(obj.nonce)
        }

        if ((obj.proof != null && obj.proof.byteLength > 0)) {
          w.uint32(18)
          w.bytes(obj.proof)
        }

        if ((obj.error != null && obj.error !== '')) {
          w.uint32(26)
          w.string(obj.error)
        }

        if ((obj.ok != null && obj.ok !== false)) {
          w.uint32(32)
          w.bool(obj.ok)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          nonce: uint8ArrayAlloc(0),
          proof: uint8ArrayAlloc(0),
          error: '',
          ok: false
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.nonce = reader.bytes()
              break
            }
            case 2: {
              obj.proof = reader.bytes()
              break
            }
            case 3: {
              obj.error = reader.string()
              break
            }
            case 4: {
              obj.ok = reader.bool()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.nonce`,
                value: reader.bytes()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.proof`,
                value: reader.bytes()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.error`,
                value: reader.string()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.ok`,
                value: reader.bool()
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface AuthMessageNonceFieldEvent {
    field: '$.nonce'
    value: Uint8Array<ArrayBuffer>
  }

  export interface AuthMessageProofFieldEvent {
    field: '$.proof'
    value: Uint8Array<ArrayBuffer>
  }

  export interface AuthMessageErrorFieldEvent {
    field: '$.error'
    value: string
  }

  export interface AuthMessageOkFieldEvent {
    field: '$.ok'
    value: boolean
  }

  export function encode (obj: Partial<AuthMessage>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, AuthMessage.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<AuthMessage>): AuthMessage {
    return decodeMessage(buf, AuthMessage.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<AuthMessage>): Generator<AuthMessageNonceFieldEvent | AuthMessageProofFieldEvent | AuthMessageErrorFieldEvent | AuthMessageOkFieldEvent> {
    return streamMessage(buf, AuthMessage.codec(), opts)
  }
}
