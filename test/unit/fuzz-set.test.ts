/** Fuzz: compact SET decoding, token extraction and verification with and without keys (fixed seed). */
import {setProperties} from '../fuzz/properties-set.js'
import {describeFuzz} from '../fuzz/run.js'

describeFuzz('fuzz: SETs and the verifier', setProperties)
