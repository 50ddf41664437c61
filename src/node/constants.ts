export const MIN_MESH_KEY_LENGTH = 32
export const DEFAULT_LISTEN = '/ip4/0.0.0.0/tcp/4001'
export const DEFAULT_API = '127.0.0.1:7070'
