/**
 * Every error that can reach a user carries a stable `code` (reported by the
 * CLI and in HTTP error bodies), an HTTP status, and a message that says what
 * happened and what to do.
 */
export class SyncmeshError extends Error {
  readonly code: string
  readonly status: number

  constructor (code: string, message: string, status = 500, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'SyncmeshError'
    this.code = code
    this.status = status
  }
}

/** A request or command argument is malformed: fix the input and retry. */
export class InvalidInputError extends SyncmeshError {
  constructor (message: string, code = 'INVALID_INPUT') {
    super(code, message, 400)
    this.name = 'InvalidInputError'
  }
}

export class NotFoundError extends SyncmeshError {
  constructor (message: string, code = 'NOT_FOUND') {
    super(code, message, 404)
    this.name = 'NotFoundError'
  }
}

export class ConflictError extends SyncmeshError {
  constructor (message: string, code = 'CONFLICT') {
    super(code, message, 409)
    this.name = 'ConflictError'
  }
}

/** Configuration or data directory problem found at start. */
export class ConfigError extends SyncmeshError {
  constructor (message: string, code = 'CONFIG_INVALID') {
    super(code, message, 500)
    this.name = 'ConfigError'
  }
}

/** A peer broke the wire protocol: the stream is aborted, nothing is stored. */
export class ProtocolError extends SyncmeshError {
  constructor (message: string, code = 'PROTOCOL_VIOLATION') {
    super(code, message, 400)
    this.name = 'ProtocolError'
  }
}

/** A peer failed to prove that it holds the mesh key. */
export class AuthenticationError extends SyncmeshError {
  constructor (message: string, code = 'AUTH_FAILED') {
    super(code, message, 401)
    this.name = 'AuthenticationError'
  }
}

export class NotRunningError extends SyncmeshError {
  constructor (message = 'the node is not running; call start() first') {
    super('NOT_RUNNING', message, 503)
    this.name = 'NotRunningError'
  }
}
