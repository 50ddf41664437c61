#!/usr/bin/env node
import '../polyfill.js'
import { run } from './program.js'

await run(process.argv)
