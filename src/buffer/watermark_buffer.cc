#include "buffer/watermark_buffer.h"

#include <utility>

namespace sluice::buffer {

WatermarkBuffer::WatermarkBuffer(std::function<void()> below_low_watermark,
                                 std::function<void()> above_high_watermark)
    : below_low_watermark_(std::move(below_low_watermark)),
      above_high_watermark_(std::move(above_high_watermark)) {}

void WatermarkBuffer::setWatermarks(uint32_t high) {
  high_watermark_ = high;
  low_watermark_ = high / 2;
  if (high == 0) {
    if (above_high_) {
      above_high_ = false;
      if (below_low_watermark_) {
        below_low_watermark_();
      }
    }
    return;
  }
  onLengthChanged();
}

void WatermarkBuffer::onLengthChanged() {
  if (high_watermark_ == 0) {
    return;
  }
  if (!above_high_) {
    if (length() > high_watermark_) {
      above_high_ = true;
      if (above_high_watermark_) {
        above_high_watermark_();
      }
    }
  } else if (length() <= low_watermark_) {
    above_high_ = false;
    if (below_low_watermark_) {
      below_low_watermark_();
    }
  }
}

}  // namespace sluice::buffer
