/**
 * When to try the WebSocket again after it dropped. SIP.js leaves reconnection to the application
 * (its reconnectionAttempts is deprecated and 0 by default), so the softphone retries with
 * exponential backoff and full jitter: a whole helpdesk losing its proxy at once must not come
 * back in one burst (RFC 5626 4.5 asks for the same of flow recovery).
 */
export class Backoff {
  private attempt = 0;

  constructor(
    private readonly baseMs = 1000,
    private readonly maxMs = 30000,
  ) {}

  /** The wait before the next attempt, growing with each call until reset(). */
  next(random: () => number = Math.random): number {
    const ceiling = Math.min(this.maxMs, this.baseMs * 2 ** this.attempt);
    this.attempt += 1;
    return Math.round(ceiling / 2 + (random() * ceiling) / 2);
  }

  get attempts(): number {
    return this.attempt;
  }

  reset(): void {
    this.attempt = 0;
  }
}
