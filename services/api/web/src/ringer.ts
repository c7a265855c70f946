/**
 * The sound of an incoming call: a two-tone ring (440 + 480 Hz, 2 s on, 4 s off, the North
 * American cadence of ITU-T E.180) from WebAudio, so no audio file ships with the page. The context
 * is made on the agent's click on Register: browsers start audio only after a user gesture.
 * While the agent is on a call, a second call is announced by a call waiting tone instead (one
 * 440 Hz beep of 0.3 s every 10 s, the North American one): a full ring would drown the customer.
 */
export class Ringer {
  private context: AudioContext | null = null;
  private stopCurrent: (() => void) | null = null;
  private waiting = false;

  /** Call from a user gesture, so that later rings may sound. */
  unlock(): void {
    if (this.context === null) {
      this.context = new AudioContext();
    }
    void this.context.resume();
  }

  /** Ring, or with `waiting` (a call is up) sound the call waiting tone. */
  start(waiting = false): void {
    const context = this.context;
    if (context === null || (this.stopCurrent !== null && this.waiting === waiting)) {
      return;
    }
    this.stop();
    this.waiting = waiting;
    const gain = context.createGain();
    gain.gain.value = 0;
    gain.connect(context.destination);
    const [frequencies, on, every] = waiting ? [[440], 0.3, 10_000] : [[440, 480], 2, 6000];
    const tones = frequencies.map((frequency) => {
      const tone = context.createOscillator();
      tone.frequency.value = frequency;
      tone.connect(gain);
      tone.start();
      return tone;
    });
    const cadence = (): void => {
      const now = context.currentTime;
      gain.gain.setValueAtTime(0.1, now);
      gain.gain.setValueAtTime(0, now + on);
    };
    cadence();
    const timer = window.setInterval(cadence, every);
    this.stopCurrent = () => {
      window.clearInterval(timer);
      for (const tone of tones) {
        tone.stop();
      }
      gain.disconnect();
    };
  }

  stop(): void {
    this.stopCurrent?.();
    this.stopCurrent = null;
  }
}
