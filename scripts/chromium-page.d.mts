// Types of chromium-page.mjs, for the tests.
export declare const CHROMIUM: string;
export declare function chromiumFlags(userDataDir: string): string[];
export interface Page {
  /** URLs of every request the page made, the page itself first. */
  requests: string[];
  /** The value of a JavaScript expression in the page. */
  evaluate<T = unknown>(expression: string): Promise<T>;
  /** A PNG of the whole page, or of `maxHeight` CSS pixels of it from `top`. */
  screenshot(options?: { top?: number; maxHeight?: number }): Promise<Buffer>;
  close(): Promise<void>;
}
export declare function openPage(
  url: string,
  options?: { width?: number; height?: number; scale?: number; timeoutMs?: number },
): Promise<Page>;
