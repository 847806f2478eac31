#pragma once

// WatermarkBuffer: a Buffer that reports back-pressure. With a high watermark set, it calls
// above_high_watermark once when its length rises above high, and below_low_watermark once
// when it later falls to low (high / 2) or less; a buffer that never went above high never
// reports low. The check runs after every mutating Buffer method, including those that drain
// this buffer as the source of another buffer's move(). Callbacks run after the buffer is
// consistent and may change it.

#include <cstdint>
#include <functional>

#include "buffer/buffer.h"

namespace sluice::buffer {

class WatermarkBuffer : public Buffer {
 public:
  WatermarkBuffer(std::function<void()> below_low_watermark,
                  std::function<void()> above_high_watermark);
  WatermarkBuffer(const WatermarkBuffer&) = delete;
  WatermarkBuffer& operator=(const WatermarkBuffer&) = delete;
  WatermarkBuffer(WatermarkBuffer&&) = delete;
  WatermarkBuffer& operator=(WatermarkBuffer&&) = delete;

  // Sets high (low = high / 2) and checks the current length against them at once. 0 disables
  // the watermarks; if the high callback had fired, the low callback fires to release it.
  void setWatermarks(uint32_t high);
  uint32_t highWatermark() const { return high_watermark_; }
  uint32_t lowWatermark() const { return low_watermark_; }
  // True between an above-high callback and the following below-low callback.
  bool highWatermarkTriggered() const { return above_high_; }

 protected:
  void onLengthChanged() override;

 private:
  std::function<void()> below_low_watermark_;
  std::function<void()> above_high_watermark_;
  uint32_t high_watermark_ = 0;
  uint32_t low_watermark_ = 0;
  bool above_high_ = false;
};

}  // namespace sluice::buffer
