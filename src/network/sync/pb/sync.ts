import { decodeMessage, encodeMessage, enumeration, MaxLengthError, message, streamMessage } from 'protons-runtime'
import { alloc as uint8ArrayAlloc } from 'uint8arrays/alloc'
import type { Codec, DecodeOptions } from 'protons-runtime'
import type { Uint8ArrayList } from 'uint8arraylist'

export enum Op {
  PUT = 'PUT',
  DEL = 'DEL'
}

enum __OpValues {
  PUT = 0,
  DEL = 1
}

export namespace Op {
  export const codec = (): Codec<Op> => {
    return enumeration<Op>(__OpValues)
  }
}

export interface Entry {
  seq: number
  hlcWall: number
  hlcLogical: number
  collection: string
  id: string
  op: Op
  value: Uint8Array<ArrayBuffer>
  writer: string
  writerSeq: number
}

export namespace Entry {
  let _codec: Codec<Entry>

  export const codec = (): Codec<Entry> => {
    if (_codec == null) {
      _codec = message<Entry>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.seq != null && obj.seq !== 0)) {
          w.uint32(8)
          w.uint64Number(obj.seq)
        }

        if ((obj.hlcWall != null && obj.hlcWall !== 0)) {
          w.uint32(16)
          w.uint64Number(obj.hlcWall)
        }

        if ((obj.hlcLogical != null && obj.hlcLogical !== 0)) {
          w.uint32(24)
          w.uint32(obj.hlcLogical)
        }

        if ((obj.collection != null && obj.collection !== '')) {
          w.uint32(34)
          w.string(obj.collection)
        }

        if ((obj.id != null && obj.id !== '')) {
          w.uint32(42)
          w.string(obj.id)
        }

        if (obj.op != null && __OpValues[obj.op] !== 0) {
          w.uint32(48)
          Op.codec().encode(obj.op, w)
        }

        if ((obj.value != null && obj.value.byteLength > 0)) {
          w.uint32(58)
          w.bytes(obj.value)
        }

        if ((obj.writer != null && obj.writer !== '')) {
          w.uint32(66)
          w.string(obj.writer)
        }

        if ((obj.writerSeq != null && obj.writerSeq !== 0)) {
          w.uint32(72)
          w.uint64Number(obj.writerSeq)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          seq: 0,
          hlcWall: 0,
          hlcLogical: 0,
          collection: '',
          id: '',
          op: Op.PUT,
          value: uint8ArrayAlloc(0),
          writer: '',
          writerSeq: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.seq = reader.uint64Number()
              break
            }
            case 2: {
              obj.hlcWall = reader.uint64Number()
              break
            }
            case 3: {
              obj.hlcLogical = reader.uint32()
              break
            }
            case 4: {
              obj.collection = reader.string()
              break
            }
            case 5: {
              obj.id = reader.string()
              break
            }
            case 6: {
              obj.op = Op.codec().decode(reader)
              break
            }
            case 7: {
              obj.value = reader.bytes()
              break
            }
            case 8: {
              obj.writer = reader.string()
              break
            }
            case 9: {
              obj.writerSeq = reader.uint64Number()
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
                field: `${prefix}.seq`,
                value: reader.uint64Number()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.hlcWall`,
                value: reader.uint64Number()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.hlcLogical`,
                value: reader.uint32()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.collection`,
                value: reader.string()
              }
              break
            }
            case 5: {
              yield {
                field: `${prefix}.id`,
                value: reader.string()
              }
              break
            }
            case 6: {
              yield {
                field: `${prefix}.op`,
                value: Op.codec().decode(reader)
              }
              break
            }
            case 7: {
              yield {
                field: `${prefix}.value`,
                value: reader.bytes()
              }
              break
            }
            case 8: {
              yield {
                field: `${prefix}.writer`,
                value: reader.string()
              }
              break
            }
            case 9: {
              yield {
                field: `${prefix}.writerSeq`,
                value: reader.uint64Number()
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

  export interface EntrySeqFieldEvent {
    field: '$.seq'
    value: number
  }

  export interface EntryHlcWallFieldEvent {
    field: '$.hlcWall'
    value: number
  }

  export interface EntryHlcLogicalFieldEvent {
    field: '$.hlcLogical'
    value: number
  }

  export interface EntryCollectionFieldEvent {
    field: '$.collection'
    value: string
  }

  export interface EntryIdFieldEvent {
    field: '$.id'
    value: string
  }

  export interface EntryOpFieldEvent {
    field: '$.op'
    value: Op
  }

  export interface EntryValueFieldEvent {
    field: '$.value'
    value: Uint8Array<ArrayBuffer>
  }

  export interface EntryWriterFieldEvent {
    field: '$.writer'
    value: string
  }

  export interface EntryWriterSeqFieldEvent {
    field: '$.writerSeq'
    value: number
  }

  export function encode (obj: Partial<Entry>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, Entry.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Entry>): Entry {
    return decodeMessage(buf, Entry.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Entry>): Generator<EntrySeqFieldEvent | EntryHlcWallFieldEvent | EntryHlcLogicalFieldEvent | EntryCollectionFieldEvent | EntryIdFieldEvent | EntryOpFieldEvent | EntryValueFieldEvent | EntryWriterFieldEvent | EntryWriterSeqFieldEvent> {
    return streamMessage(buf, Entry.codec(), opts)
  }
}

export interface VersionEntry {
  origin: string
  seq: number
}

export namespace VersionEntry {
  let _codec: Codec<VersionEntry>

  export const codec = (): Codec<VersionEntry> => {
    if (_codec == null) {
      _codec = message<VersionEntry>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.origin != null && obj.origin !== '')) {
          w.uint32(10)
          w.string(obj.origin)
        }

        if ((obj.seq != null && obj.seq !== 0)) {
          w.uint32(16)
          w.uint64Number(obj.seq)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          origin: '',
          seq: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.origin = reader.string()
              break
            }
            case 2: {
              obj.seq = reader.uint64Number()
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
                field: `${prefix}.origin`,
                value: reader.string()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.seq`,
                value: reader.uint64Number()
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

  export interface VersionEntryOriginFieldEvent {
    field: '$.origin'
    value: string
  }

  export interface VersionEntrySeqFieldEvent {
    field: '$.seq'
    value: number
  }

  export function encode (obj: Partial<VersionEntry>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, VersionEntry.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<VersionEntry>): VersionEntry {
    return decodeMessage(buf, VersionEntry.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<VersionEntry>): Generator<VersionEntryOriginFieldEvent | VersionEntrySeqFieldEvent> {
    return streamMessage(buf, VersionEntry.codec(), opts)
  }
}

export interface Hello {
  protocolVersion: number
  name: string
  vector: VersionEntry[]
  credit: number
}

export namespace Hello {
  let _codec: Codec<Hello>

  export const codec = (): Codec<Hello> => {
    if (_codec == null) {
      _codec = message<Hello>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.protocolVersion != null && obj.protocolVersion !== 0)) {
          w.uint32(8)
          w.uint32(obj.protocolVersion)
        }

        if ((obj.name != null && obj.name !== '')) {
          w.uint32(18)
          w.string(obj.name)
        }

        if (obj.vector != null && obj.vector.length > 0) {
          for (const value of obj.vector) {
            w.uint32(26)
            VersionEntry.codec().encode(value, w)
          }
        }

        if ((obj.credit != null && obj.credit !== 0)) {
          w.uint32(32)
          w.uint32(obj.credit)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          protocolVersion: 0,
          name: '',
          vector: [],
          credit: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.protocolVersion = reader.uint32()
              break
            }
            case 2: {
              obj.name = reader.string()
              break
            }
            case 3: {
              if (opts.limits?.vector != null && obj.vector.length === opts.limits.vector) {
                throw new MaxLengthError('Decode error - repeated field "vector" had too many elements')
              }

              obj.vector.push(VersionEntry.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.vector$
              }))
              break
            }
            case 4: {
              obj.credit = reader.uint32()
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
        const obj = {
          vector: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.protocolVersion`,
                value: reader.uint32()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.name`,
                value: reader.string()
              }
              break
            }
            case 3: {
              if (opts.limits?.vector != null && obj.vector === opts.limits.vector) {
                throw new MaxLengthError('Streaming decode error - repeated field "vector" had too many elements')
              }

              for (const evt of VersionEntry.codec().stream(reader, reader.uint32(), `${prefix}.vector[]`, {
                limits: opts.limits?.vector$
              })) {
                yield {
                  ...evt,
                  index: obj.vector
                }
              }

              obj.vector++

              break
            }
            case 4: {
              yield {
                field: `${prefix}.credit`,
                value: reader.uint32()
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

  export interface HelloProtocolVersionFieldEvent {
    field: '$.protocolVersion'
    value: number
  }

  export interface HelloNameFieldEvent {
    field: '$.name'
    value: string
  }

  export interface HelloVectorOriginFieldEvent {
    field: '$.vector[].origin'
    value: string
    index: number
  }

  export interface HelloVectorSeqFieldEvent {
    field: '$.vector[].seq'
    value: number
    index: number
  }

  export interface HelloCreditFieldEvent {
    field: '$.credit'
    value: number
  }

  export function encode (obj: Partial<Hello>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, Hello.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Hello>): Hello {
    return decodeMessage(buf, Hello.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Hello>): Generator<HelloProtocolVersionFieldEvent | HelloNameFieldEvent | HelloVectorOriginFieldEvent | HelloVectorSeqFieldEvent | HelloCreditFieldEvent> {
    return streamMessage(buf, Hello.codec(), opts)
  }
}

export interface Batch {
  origin: string
  fromSeq: number
  toSeq: number
  entries: Entry[]
  certs: RunCert[]
}

export namespace Batch {
  let _codec: Codec<Batch>

  export const codec = (): Codec<Batch> => {
    if (_codec == null) {
      _codec = message<Batch>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.origin != null && obj.origin !== '')) {
          w.uint32(10)
          w.string(obj.origin)
        }

        if ((obj.fromSeq != null && obj.fromSeq !== 0)) {
          w.uint32(16)
          w.uint64Number(obj.fromSeq)
        }

        if ((obj.toSeq != null && obj.toSeq !== 0)) {
          w.uint32(24)
          w.uint64Number(obj.toSeq)
        }

        if (obj.entries != null && obj.entries.length > 0) {
          for (const value of obj.entries) {
            w.uint32(34)
            Entry.codec().encode(value, w)
          }
        }

        if (obj.certs != null && obj.certs.length > 0) {
          for (const value of obj.certs) {
            w.uint32(42)
            RunCert.codec().encode(value, w)
          }
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          origin: '',
          fromSeq: 0,
          toSeq: 0,
          entries: [],
          certs: []
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.origin = reader.string()
              break
            }
            case 2: {
              obj.fromSeq = reader.uint64Number()
              break
            }
            case 3: {
              obj.toSeq = reader.uint64Number()
              break
            }
            case 4: {
              if (opts.limits?.entries != null && obj.entries.length === opts.limits.entries) {
                throw new MaxLengthError('Decode error - repeated field "entries" had too many elements')
              }

              obj.entries.push(Entry.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.entries$
              }))
              break
            }
            case 5: {
              if (opts.limits?.certs != null && obj.certs.length === opts.limits.certs) {
                throw new MaxLengthError('Decode error - repeated field "certs" had too many elements')
              }

              obj.certs.push(RunCert.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.certs$
              }))
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
        const obj = {
          entries: 0,
          certs: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.origin`,
                value: reader.string()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.fromSeq`,
                value: reader.uint64Number()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.toSeq`,
                value: reader.uint64Number()
              }
              break
            }
            case 4: {
              if (opts.limits?.entries != null && obj.entries === opts.limits.entries) {
                throw new MaxLengthError('Streaming decode error - repeated field "entries" had too many elements')
              }

              for (const evt of Entry.codec().stream(reader, reader.uint32(), `${prefix}.entries[]`, {
                limits: opts.limits?.entries$
              })) {
                yield {
                  ...evt,
                  index: obj.entries
                }
              }

              obj.entries++

              break
            }
            case 5: {
              if (opts.limits?.certs != null && obj.certs === opts.limits.certs) {
                throw new MaxLengthError('Streaming decode error - repeated field "certs" had too many elements')
              }

              for (const evt of RunCert.codec().stream(reader, reader.uint32(), `${prefix}.certs[]`, {
                limits: opts.limits?.certs$
              })) {
                yield {
                  ...evt,
                  index: obj.certs
                }
              }

              obj.certs++

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

  export interface BatchOriginFieldEvent {
    field: '$.origin'
    value: string
  }

  export interface BatchFromSeqFieldEvent {
    field: '$.fromSeq'
    value: number
  }

  export interface BatchToSeqFieldEvent {
    field: '$.toSeq'
    value: number
  }

  export interface BatchEntriesSeqFieldEvent {
    field: '$.entries[].seq'
    value: number
    index: number
  }

  export interface BatchEntriesHlcWallFieldEvent {
    field: '$.entries[].hlcWall'
    value: number
    index: number
  }

  export interface BatchEntriesHlcLogicalFieldEvent {
    field: '$.entries[].hlcLogical'
    value: number
    index: number
  }

  export interface BatchEntriesCollectionFieldEvent {
    field: '$.entries[].collection'
    value: string
    index: number
  }

  export interface BatchEntriesIdFieldEvent {
    field: '$.entries[].id'
    value: string
    index: number
  }

  export interface BatchEntriesOpFieldEvent {
    field: '$.entries[].op'
    value: Op
    index: number
  }

  export interface BatchEntriesValueFieldEvent {
    field: '$.entries[].value'
    value: Uint8Array<ArrayBuffer>
    index: number
  }

  export interface BatchEntriesWriterFieldEvent {
    field: '$.entries[].writer'
    value: string
    index: number
  }

  export interface BatchEntriesWriterSeqFieldEvent {
    field: '$.entries[].writerSeq'
    value: number
    index: number
  }

  export interface BatchCertsFromSeqFieldEvent {
    field: '$.certs[].fromSeq'
    value: number
    index: number
  }

  export interface BatchCertsToSeqFieldEvent {
    field: '$.certs[].toSeq'
    value: number
    index: number
  }

  export interface BatchCertsSigFieldEvent {
    field: '$.certs[].sig'
    value: Uint8Array<ArrayBuffer>
    index: number
  }

  export interface BatchCertsPrunedLevelFieldEvent {
    field: '$.certs[].pruned[].level'
    value: number
    index: number
  }

  export interface BatchCertsPrunedIndexFieldEvent {
    field: '$.certs[].pruned[].index'
    value: number
    index: number
  }

  export interface BatchCertsPrunedHashFieldEvent {
    field: '$.certs[].pruned[].hash'
    value: Uint8Array<ArrayBuffer>
    index: number
  }

  export function encode (obj: Partial<Batch>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, Batch.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Batch>): Batch {
    return decodeMessage(buf, Batch.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Batch>): Generator<BatchOriginFieldEvent | BatchFromSeqFieldEvent | BatchToSeqFieldEvent | BatchEntriesSeqFieldEvent | BatchEntriesHlcWallFieldEvent | BatchEntriesHlcLogicalFieldEvent | BatchEntriesCollectionFieldEvent | BatchEntriesIdFieldEvent | BatchEntriesOpFieldEvent | BatchEntriesValueFieldEvent | BatchEntriesWriterFieldEvent | BatchEntriesWriterSeqFieldEvent | BatchCertsFromSeqFieldEvent | BatchCertsToSeqFieldEvent | BatchCertsSigFieldEvent | BatchCertsPrunedLevelFieldEvent | BatchCertsPrunedIndexFieldEvent | BatchCertsPrunedHashFieldEvent> {
    return streamMessage(buf, Batch.codec(), opts)
  }
}

export interface PrunedNode {
  level: number
  index: number
  hash: Uint8Array<ArrayBuffer>
}

export namespace PrunedNode {
  let _codec: Codec<PrunedNode>

  export const codec = (): Codec<PrunedNode> => {
    if (_codec == null) {
      _codec = message<PrunedNode>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.level != null && obj.level !== 0)) {
          w.uint32(8)
          w.uint32(obj.level)
        }

        if ((obj.index != null && obj.index !== 0)) {
          w.uint32(16)
          w.uint32(obj.index)
        }

        if ((obj.hash != null && obj.hash.byteLength > 0)) {
          w.uint32(26)
          w.bytes(obj.hash)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          level: 0,
          index: 0,
          hash: uint8ArrayAlloc(0)
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.level = reader.uint32()
              break
            }
            case 2: {
              obj.index = reader.uint32()
              break
            }
            case 3: {
              obj.hash = reader.bytes()
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
                field: `${prefix}.level`,
                value: reader.uint32()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.index`,
                value: reader.uint32()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.hash`,
                value: reader.bytes()
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

  export interface PrunedNodeLevelFieldEvent {
    field: '$.level'
    value: number
  }

  export interface PrunedNodeIndexFieldEvent {
    field: '$.index'
    value: number
  }

  export interface PrunedNodeHashFieldEvent {
    field: '$.hash'
    value: Uint8Array<ArrayBuffer>
  }

  export function encode (obj: Partial<PrunedNode>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, PrunedNode.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<PrunedNode>): PrunedNode {
    return decodeMessage(buf, PrunedNode.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<PrunedNode>): Generator<PrunedNodeLevelFieldEvent | PrunedNodeIndexFieldEvent | PrunedNodeHashFieldEvent> {
    return streamMessage(buf, PrunedNode.codec(), opts)
  }
}

export interface RunCert {
  fromSeq: number
  toSeq: number
  sig: Uint8Array<ArrayBuffer>
  pruned: PrunedNode[]
}

export namespace RunCert {
  let _codec: Codec<RunCert>

  export const codec = (): Codec<RunCert> => {
    if (_codec == null) {
      _codec = message<RunCert>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.fromSeq != null && obj.fromSeq !== 0)) {
          w.uint32(8)
          w.uint64Number(obj.fromSeq)
        }

        if ((obj.toSeq != null && obj.toSeq !== 0)) {
          w.uint32(16)
          w.uint64Number(obj.toSeq)
        }

        if ((obj.sig != null && obj.sig.byteLength > 0)) {
          w.uint32(26)
          w.bytes(obj.sig)
        }

        if (obj.pruned != null && obj.pruned.length > 0) {
          for (const value of obj.pruned) {
            w.uint32(34)
            PrunedNode.codec().encode(value, w)
          }
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          fromSeq: 0,
          toSeq: 0,
          sig: uint8ArrayAlloc(0),
          pruned: []
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.fromSeq = reader.uint64Number()
              break
            }
            case 2: {
              obj.toSeq = reader.uint64Number()
              break
            }
            case 3: {
              obj.sig = reader.bytes()
              break
            }
            case 4: {
              if (opts.limits?.pruned != null && obj.pruned.length === opts.limits.pruned) {
                throw new MaxLengthError('Decode error - repeated field "pruned" had too many elements')
              }

              obj.pruned.push(PrunedNode.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.pruned$
              }))
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
        const obj = {
          pruned: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.fromSeq`,
                value: reader.uint64Number()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.toSeq`,
                value: reader.uint64Number()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.sig`,
                value: reader.bytes()
              }
              break
            }
            case 4: {
              if (opts.limits?.pruned != null && obj.pruned === opts.limits.pruned) {
                throw new MaxLengthError('Streaming decode error - repeated field "pruned" had too many elements')
              }

              for (const evt of PrunedNode.codec().stream(reader, reader.uint32(), `${prefix}.pruned[]`, {
                limits: opts.limits?.pruned$
              })) {
                yield {
                  ...evt,
                  index: obj.pruned
                }
              }

              obj.pruned++

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

  export interface RunCertFromSeqFieldEvent {
    field: '$.fromSeq'
    value: number
  }

  export interface RunCertToSeqFieldEvent {
    field: '$.toSeq'
    value: number
  }

  export interface RunCertSigFieldEvent {
    field: '$.sig'
    value: Uint8Array<ArrayBuffer>
  }

  export interface RunCertPrunedLevelFieldEvent {
    field: '$.pruned[].level'
    value: number
    index: number
  }

  export interface RunCertPrunedIndexFieldEvent {
    field: '$.pruned[].index'
    value: number
    index: number
  }

  export interface RunCertPrunedHashFieldEvent {
    field: '$.pruned[].hash'
    value: Uint8Array<ArrayBuffer>
    index: number
  }

  export function encode (obj: Partial<RunCert>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, RunCert.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<RunCert>): RunCert {
    return decodeMessage(buf, RunCert.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<RunCert>): Generator<RunCertFromSeqFieldEvent | RunCertToSeqFieldEvent | RunCertSigFieldEvent | RunCertPrunedLevelFieldEvent | RunCertPrunedIndexFieldEvent | RunCertPrunedHashFieldEvent> {
    return streamMessage(buf, RunCert.codec(), opts)
  }
}

export interface Credit {
  batches: number
}

export namespace Credit {
  let _codec: Codec<Credit>

  export const codec = (): Codec<Credit> => {
    if (_codec == null) {
      _codec = message<Credit>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.batches != null && obj.batches !== 0)) {
          w.uint32(8)
          w.uint32(obj.batches)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          batches: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.batches = reader.uint32()
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
                field: `${prefix}.batches`,
                value: reader.uint32()
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

  export interface CreditBatchesFieldEvent {
    field: '$.batches'
    value: number
  }

  export function encode (obj: Partial<Credit>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, Credit.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Credit>): Credit {
    return decodeMessage(buf, Credit.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Credit>): Generator<CreditBatchesFieldEvent> {
    return streamMessage(buf, Credit.codec(), opts)
  }
}

export interface Vector {
  vector: VersionEntry[]
}

export namespace Vector {
  let _codec: Codec<Vector>

  export const codec = (): Codec<Vector> => {
    if (_codec == null) {
      _codec = message<Vector>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if (obj.vector != null && obj.vector.length > 0) {
          for (const value of obj.vector) {
            w.uint32(10)
            VersionEntry.codec().encode(value, w)
          }
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          vector: []
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              if (opts.limits?.vector != null && obj.vector.length === opts.limits.vector) {
                throw new MaxLengthError('Decode error - repeated field "vector" had too many elements')
              }

              obj.vector.push(VersionEntry.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.vector$
              }))
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
        const obj = {
          vector: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              if (opts.limits?.vector != null && obj.vector === opts.limits.vector) {
                throw new MaxLengthError('Streaming decode error - repeated field "vector" had too many elements')
              }

              for (const evt of VersionEntry.codec().stream(reader, reader.uint32(), `${prefix}.vector[]`, {
                limits: opts.limits?.vector$
              })) {
                yield {
                  ...evt,
                  index: obj.vector
                }
              }

              obj.vector++

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

  export interface VectorVectorOriginFieldEvent {
    field: '$.vector[].origin'
    value: string
    index: number
  }

  export interface VectorVectorSeqFieldEvent {
    field: '$.vector[].seq'
    value: number
    index: number
  }

  export function encode (obj: Partial<Vector>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, Vector.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Vector>): Vector {
    return decodeMessage(buf, Vector.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Vector>): Generator<VectorVectorOriginFieldEvent | VectorVectorSeqFieldEvent> {
    return streamMessage(buf, Vector.codec(), opts)
  }
}

export interface Have {
  origin: string
  seq: number
}

export namespace Have {
  let _codec: Codec<Have>

  export const codec = (): Codec<Have> => {
    if (_codec == null) {
      _codec = message<Have>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.origin != null && obj.origin !== '')) {
          w.uint32(10)
          w.string(obj.origin)
        }

        if ((obj.seq != null && obj.seq !== 0)) {
          w.uint32(16)
          w.uint64Number(obj.seq)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          origin: '',
          seq: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.origin = reader.string()
              break
            }
            case 2: {
              obj.seq = reader.uint64Number()
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
                field: `${prefix}.origin`,
                value: reader.string()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.seq`,
                value: reader.uint64Number()
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

  export interface HaveOriginFieldEvent {
    field: '$.origin'
    value: string
  }

  export interface HaveSeqFieldEvent {
    field: '$.seq'
    value: number
  }

  export function encode (obj: Partial<Have>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, Have.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Have>): Have {
    return decodeMessage(buf, Have.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Have>): Generator<HaveOriginFieldEvent | HaveSeqFieldEvent> {
    return streamMessage(buf, Have.codec(), opts)
  }
}

export interface Frame {
  hello?: Hello
  batch?: Batch
  credit?: Credit
  vector?: Vector
  have?: Have
}

export namespace Frame {
  let _codec: Codec<Frame>

  export const codec = (): Codec<Frame> => {
    if (_codec == null) {
      _codec = message<Frame>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if (obj.hello != null) {
          w.uint32(10)
          Hello.codec().encode(obj.hello, w)
        }

        if (obj.batch != null) {
          w.uint32(18)
          Batch.codec().encode(obj.batch, w)
        }

        if (obj.credit != null) {
          w.uint32(26)
          Credit.codec().encode(obj.credit, w)
        }

        if (obj.vector != null) {
          w.uint32(34)
          Vector.codec().encode(obj.vector, w)
        }

        if (obj.have != null) {
          w.uint32(42)
          Have.codec().encode(obj.have, w)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {}

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.hello = Hello.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.hello
              })
              break
            }
            case 2: {
              obj.batch = Batch.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.batch
              })
              break
            }
            case 3: {
              obj.credit = Credit.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.credit
              })
              break
            }
            case 4: {
              obj.vector = Vector.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.vector
              })
              break
            }
            case 5: {
              obj.have = Have.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.have
              })
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
              yield * Hello.codec().stream(reader, reader.uint32(), `${prefix}.hello`, {
                limits: opts.limits?.hello
              })

              break
            }
            case 2: {
              yield * Batch.codec().stream(reader, reader.uint32(), `${prefix}.batch`, {
                limits: opts.limits?.batch
              })

              break
            }
            case 3: {
              yield * Credit.codec().stream(reader, reader.uint32(), `${prefix}.credit`, {
                limits: opts.limits?.credit
              })

              break
            }
            case 4: {
              yield * Vector.codec().stream(reader, reader.uint32(), `${prefix}.vector`, {
                limits: opts.limits?.vector
              })

              break
            }
            case 5: {
              yield * Have.codec().stream(reader, reader.uint32(), `${prefix}.have`, {
                limits: opts.limits?.have
              })

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

  export interface FrameHelloProtocolVersionFieldEvent {
    field: '$.hello.protocolVersion'
    value: number
  }

  export interface FrameHelloNameFieldEvent {
    field: '$.hello.name'
    value: string
  }

  export interface FrameHelloVectorOriginFieldEvent {
    field: '$.hello.vector[].origin'
    value: string
    index: number
  }

  export interface FrameHelloVectorSeqFieldEvent {
    field: '$.hello.vector[].seq'
    value: number
    index: number
  }

  export interface FrameHelloCreditFieldEvent {
    field: '$.hello.credit'
    value: number
  }

  export interface FrameBatchOriginFieldEvent {
    field: '$.batch.origin'
    value: string
  }

  export interface FrameBatchFromSeqFieldEvent {
    field: '$.batch.fromSeq'
    value: number
  }

  export interface FrameBatchToSeqFieldEvent {
    field: '$.batch.toSeq'
    value: number
  }

  export interface FrameBatchEntriesSeqFieldEvent {
    field: '$.batch.entries[].seq'
    value: number
    index: number
  }

  export interface FrameBatchEntriesHlcWallFieldEvent {
    field: '$.batch.entries[].hlcWall'
    value: number
    index: number
  }

  export interface FrameBatchEntriesHlcLogicalFieldEvent {
    field: '$.batch.entries[].hlcLogical'
    value: number
    index: number
  }

  export interface FrameBatchEntriesCollectionFieldEvent {
    field: '$.batch.entries[].collection'
    value: string
    index: number
  }

  export interface FrameBatchEntriesIdFieldEvent {
    field: '$.batch.entries[].id'
    value: string
    index: number
  }

  export interface FrameBatchEntriesOpFieldEvent {
    field: '$.batch.entries[].op'
    value: Op
    index: number
  }

  export interface FrameBatchEntriesValueFieldEvent {
    field: '$.batch.entries[].value'
    value: Uint8Array<ArrayBuffer>
    index: number
  }

  export interface FrameBatchEntriesWriterFieldEvent {
    field: '$.batch.entries[].writer'
    value: string
    index: number
  }

  export interface FrameBatchEntriesWriterSeqFieldEvent {
    field: '$.batch.entries[].writerSeq'
    value: number
    index: number
  }

  export interface FrameBatchCertsFromSeqFieldEvent {
    field: '$.batch.certs[].fromSeq'
    value: number
    index: number
  }

  export interface FrameBatchCertsToSeqFieldEvent {
    field: '$.batch.certs[].toSeq'
    value: number
    index: number
  }

  export interface FrameBatchCertsSigFieldEvent {
    field: '$.batch.certs[].sig'
    value: Uint8Array<ArrayBuffer>
    index: number
  }

  export interface FrameBatchCertsPrunedLevelFieldEvent {
    field: '$.batch.certs[].pruned[].level'
    value: number
    index: number
  }

  export interface FrameBatchCertsPrunedIndexFieldEvent {
    field: '$.batch.certs[].pruned[].index'
    value: number
    index: number
  }

  export interface FrameBatchCertsPrunedHashFieldEvent {
    field: '$.batch.certs[].pruned[].hash'
    value: Uint8Array<ArrayBuffer>
    index: number
  }

  export interface FrameCreditBatchesFieldEvent {
    field: '$.credit.batches'
    value: number
  }

  export interface FrameVectorVectorOriginFieldEvent {
    field: '$.vector.vector[].origin'
    value: string
    index: number
  }

  export interface FrameVectorVectorSeqFieldEvent {
    field: '$.vector.vector[].seq'
    value: number
    index: number
  }

  export interface FrameHaveOriginFieldEvent {
    field: '$.have.origin'
    value: string
  }

  export interface FrameHaveSeqFieldEvent {
    field: '$.have.seq'
    value: number
  }

  export function encode (obj: Partial<Frame>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, Frame.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Frame>): Frame {
    return decodeMessage(buf, Frame.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Frame>): Generator<FrameHelloProtocolVersionFieldEvent | FrameHelloNameFieldEvent | FrameHelloVectorOriginFieldEvent | FrameHelloVectorSeqFieldEvent | FrameHelloCreditFieldEvent | FrameBatchOriginFieldEvent | FrameBatchFromSeqFieldEvent | FrameBatchToSeqFieldEvent | FrameBatchEntriesSeqFieldEvent | FrameBatchEntriesHlcWallFieldEvent | FrameBatchEntriesHlcLogicalFieldEvent | FrameBatchEntriesCollectionFieldEvent | FrameBatchEntriesIdFieldEvent | FrameBatchEntriesOpFieldEvent | FrameBatchEntriesValueFieldEvent | FrameBatchEntriesWriterFieldEvent | FrameBatchEntriesWriterSeqFieldEvent | FrameBatchCertsFromSeqFieldEvent | FrameBatchCertsToSeqFieldEvent | FrameBatchCertsSigFieldEvent | FrameBatchCertsPrunedLevelFieldEvent | FrameBatchCertsPrunedIndexFieldEvent | FrameBatchCertsPrunedHashFieldEvent | FrameCreditBatchesFieldEvent | FrameVectorVectorOriginFieldEvent | FrameVectorVectorSeqFieldEvent | FrameHaveOriginFieldEvent | FrameHaveSeqFieldEvent> {
    return streamMessage(buf, Frame.codec(), opts)
  }
}
