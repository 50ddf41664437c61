/**
 * Collection names and record ids, validated wherever they enter the node
 * (API, CLI, wire). Names starting with "$" are reserved for the registry.
 */
import { InvalidInputError } from '../core/errors.js'

/** Platform, region, tag and secret names: letters, digits, "_", "." or "-", at most 64 characters. */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/

export const COLLECTION_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/
export const MAX_ID_LENGTH = 512
// no control characters (C0, DEL, C1): "\0" separates key parts in the store
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/

export const PLATFORMS_COLLECTION = '$platforms'
export const RULES_COLLECTION = '$rules'
/**
 * Rule streams' epoch keys, each sealed to one member of the stream's
 * audience (protocols/sync/streams.md §6): id `<origin>/<stream>/<epoch>/<peer id>`,
 * written only by the stream's origin, readable only by that peer.
 */
export const KEYS_COLLECTION = '$keys'
/** The collection an encrypted stream entry names: its real collection and id are inside the ciphertext. */
export const SEALED_COLLECTION = '$sealed'

export function isRegistryCollection (collection: string): boolean {
  return collection === PLATFORMS_COLLECTION || collection === RULES_COLLECTION || collection === KEYS_COLLECTION
}

export function isValidCollection (name: string): boolean {
  return COLLECTION_PATTERN.test(name)
}

/**
 * Well-formed Unicode: no lone surrogate (a "\ud800" escape in JSON, or a
 * string cut inside a surrogate pair). Stored as UTF-8, a lone surrogate
 * becomes U+FFFD, so distinct ids would collapse into one record.
 */
export function isWellFormed (text: string): boolean {
  return (text as string & { isWellFormed: () => boolean }).isWellFormed()
}

export function isValidId (id: string): boolean {
  return id.length > 0 && id.length <= MAX_ID_LENGTH && !CONTROL.test(id) && isWellFormed(id)
}

/** What is wrong with an id isValidId refuses (for error messages). */
export function idProblem (id: string): string {
  if (id.length > 0 && id.length <= MAX_ID_LENGTH && !CONTROL.test(id) && !isWellFormed(id)) {
    return 'is not well-formed Unicode (it holds a lone surrogate, e.g. from a "\\ud800" escape): use 1-' + MAX_ID_LENGTH + ' characters of well-formed Unicode'
  }
  return `must be 1-${MAX_ID_LENGTH} characters without control characters`
}

export function checkCollection (name: string): string {
  // the pattern is ASCII-only: a lone surrogate (or any non-ASCII character) never matches
  if (!isValidCollection(name)) {
    throw new InvalidInputError(`invalid collection name "${name.slice(0, 80)}": use 1-128 letters, digits, "_", "." or "-", starting with a letter or digit`, 'INVALID_COLLECTION')
  }
  return name
}

export function checkId (id: string): string {
  if (!isValidId(id)) {
    if (id.length > 0 && id.length <= MAX_ID_LENGTH && !CONTROL.test(id)) {
      throw new InvalidInputError(`invalid record id ${JSON.stringify(id.slice(0, 80))}: ${idProblem(id)}`, 'INVALID_ID')
    }
    throw new InvalidInputError(`invalid record id "${id.slice(0, 80)}": use 1-${MAX_ID_LENGTH} characters without control characters`, 'INVALID_ID')
  }
  return id
}
