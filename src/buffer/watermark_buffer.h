#pragma once

// WatermarkBuffer: a Buffer that reports back-pressure. With a high watermark set, it calls
// above_high_watermark once when its length rises above high, and below_low_watermark once
// when it later falls to low (high / 2) or less; a buffer that never went above high never
// reports low. The check runs after every mutating Buffer method, including those that drain
// this buffer as the source of another buffer's move(). Callbacks run after the buffer is
// consistent and may change it.

#include <cstdint>
#include <functional>
#include <memory>

#include "buffer/buffer.h"

namespace sluice::buffer {

class WatermarkBuffer : public Buffer {
 public:
  // The callback gets above_high = true when the length rose above high, false when it fell
  // back to low. A function pointer and a context, not two std::functions: every connection
  // holds two of these buffers for its whole life, idle or not (64 bytes each saved).
  using Callback = void (*)(void* context, bool above_high);
  WatermarkBuffer(Callback callback, void* context);
  // The same with two functions (kept in one heap block), for buffers made now and then.
  WatermarkBuffer(std::function<void()> below_low_watermark,
                  std::function<void()> above_high_watermark);
  ~WatermarkBuffer() override;
  WatermarkBuffer(const WatermarkBuffer&) = delete;
  WatermarkBuffer& operator=(const WatermarkBuffer&) = delete;
  WatermarkBuffer(WatermarkBuffer&&) = delete;
  WatermarkBuffer& operator=(WatermarkBuffer&&) = delete;

  // Sets high (low = high / 2) and checks the current length against them at once. 0 disables
  // the watermarks; if the high callback had fired, the low callback fires to release it.
  void setWatermarks(uint32_t high);
  uint32_t highWatermark() const { return high_watermark_; }
  uint32_t lowWatermark() const { return high_watermark_ / 2; }
  // True between an above-high callback and the following below-low callback.
  bool highWatermarkTriggered() const { return above_high_; }

 protected:
  void onLengthChanged() override;

 private:
  struct Functions;
  static void callFunctions(void* functions, bool above_high);
  void notify(bool above_high) {
    if (callback_ != nullptr) callback_(context_, above_high);
  }

  // With the std::function constructor, callback_ is callFunctions and context_ the
  // Functions block this buffer owns (no separate owning pointer: 8 bytes a buffer). The
  // low watermark is computed (high / 2), not stored: with these, 112 bytes instead of 136.
  Callback callback_ = nullptr;
  void* context_ = nullptr;
  uint32_t high_watermark_ = 0;
  bool above_high_ = false;
};

}  // namespace sluice::buffer
