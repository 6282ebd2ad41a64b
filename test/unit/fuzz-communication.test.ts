/** Fuzz: bounded JSON and Communication Object / poll / multi-SET push parsers (fixed seed). */
import {communicationProperties} from '../fuzz/properties-communication.js'
import {describeFuzz} from '../fuzz/run.js'

describeFuzz('fuzz: bounded JSON and Communication Objects', communicationProperties)
