import { loadBinding } from '../../dist/native.js';

/** The built addon, for tests of its hooks. */
export const binding = loadBinding();
