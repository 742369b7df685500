// What the desk's buttons do: answer a call, join or leave its audio, end it, start a warm transfer
// and act on one (complete, introduce, leave, cancel, accept, decline), and go (un)available. The base
// class of AgentDesk (desk/desk.js), which has the state these methods read and the server calls.

export class DeskActions {
  async act(progress, fnName, args, after) {
    this.busy = progress;
    this.error = "";
    this.render();
    const out = await this.fn(fnName, args);
    this.busy = "";
    if (out.error) {
      this.error = out.error;
      this.render();
      return null;
    }
    if (out.me) this.apply(out);
    if (after) await after(out);
    this.render();
    return out;
  }

  setAvailable(on) {
    return this.act(on ? "Going available…" : "Going unavailable…", "agent_available", { available: on });
  }

  acceptCall(callId) {
    return this.act("Answering…", "agent_accept_call", { call_id: callId }, async (out) => {
      this.captions = [];
      this.notice = "";
      this.callLog.push({ call_id: out.call.call_id, at: Date.now() / 1000, text: `Answered ${out.call.caller_name || "the caller"}` });
      await this.joinCall(out.token);
    });
  }

  async joinCall(token) {
    const room = token.room;
    if (this.inCallRoom(room) || this._joiningCall) return; // joined or joining already (syncCall)
    this._joiningCall = true;
    try {
      await this.callRoom.connect(token, {
        publish: true,
        tokenProvider: async () => {
          const x = await this.fn("agent_room_token", { room });
          return x.error ? x : x.token;
        },
      });
    } finally {
      this._joiningCall = false;
    }
  }

  async rejoinCall() {
    const call = this.snap && this.snap.call;
    if (!call) return;
    const tok = await this.fn("agent_room_token", { room: call.room });
    if (tok.error) {
      this.error = tok.error;
      this.render();
      return;
    }
    await this.joinCall(tok.token);
  }

  endCall() {
    const call = this.snap && this.snap.call;
    if (!call) return null;
    return this.act("Ending the call…", "agent_end_call", { call_id: call.call_id }, async () => {
      this.callLog.push({ call_id: call.call_id, at: Date.now() / 1000, text: "Call ended" });
      await this.callRoom.disconnect(true);
    });
  }

  startTransfer() {
    const call = this.snap && this.snap.call;
    const target = (this.form.phone || "").trim() || this.form.target;
    if (!call) return null;
    if (!target) {
      this.error = "Pick an agent or a queue, or enter a phone number.";
      this.render();
      return null;
    }
    this.notice = "";
    return this.act(
      "Summarizing the call and preparing the spoken brief…",
      "agent_transfer",
      { call_id: call.call_id, target },
      async (out) => {
        this.form.phone = "";
        if (out.transfer) {
          this.noteTransfer(out.transfer);
          this.focusTid = out.transfer.transfer_id;
        }
      },
    );
  }

  transferAction(action, t, reason) {
    const text = {
      complete: "Completing the transfer…",
      cancel: "Cancelling…",
      accept: "Accepting: joining the caller…",
      decline: "Declining…",
      introduce: "Introducing: bringing them into the call…",
      leave: "Leaving the call…",
    }[action];
    const args = { transfer_id: t.transfer_id, action };
    if (action === "decline") args.reason = reason || this.form.reason || "";
    return this.act(text, "agent_transfer_action", args, async (out) => {
      if (action === "leave") {
        this.callLog.push({ at: Date.now() / 1000, text: "Left the call" });
        await this.callRoom.disconnect(true);
      }
      if (out.join) {
        this.captions = [];
        this.callLog.push({ call_id: t.call_id, at: Date.now() / 1000, text: "Joined the caller" });
        this.busy = "Joining the caller…";
        await this.joinCall(out.join);
      }
    });
  }
}
