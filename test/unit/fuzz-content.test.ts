/** Fuzz: subject identifiers, event payloads and the SSF lint (fixed seed). */
import {contentProperties} from '../fuzz/properties-content.js'
import {describeFuzz} from '../fuzz/run.js'

describeFuzz('fuzz: subjects, events and lint', contentProperties)
