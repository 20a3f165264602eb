// The one check for "a JSON object" (not null, not an array) that parsed input is held to before its fields are read.
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
