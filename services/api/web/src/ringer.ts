/**
 * The sound of an incoming call: a two-tone ring (440 + 480 Hz, 2 s on, 4 s off, the North
 * American cadence of ITU-T E.180) from WebAudio, so no audio file ships with the page. The context
 * is made on the agent's click on Register: browsers start audio only after a user gesture.
 */
export class Ringer {
  private context: AudioContext | null = null;
  private stopCurrent: (() => void) | null = null;

  /** Call from a user gesture, so that later rings may sound. */
  unlock(): void {
    if (this.context === null) {
      this.context = new AudioContext();
    }
    void this.context.resume();
  }

  start(): void {
    const context = this.context;
    if (context === null || this.stopCurrent !== null) {
      return;
    }
    const gain = context.createGain();
    gain.gain.value = 0;
    gain.connect(context.destination);
    const tones = [440, 480].map((frequency) => {
      const tone = context.createOscillator();
      tone.frequency.value = frequency;
      tone.connect(gain);
      tone.start();
      return tone;
    });
    const cadence = (): void => {
      const now = context.currentTime;
      gain.gain.setValueAtTime(0.1, now);
      gain.gain.setValueAtTime(0, now + 2);
    };
    cadence();
    const timer = window.setInterval(cadence, 6000);
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
