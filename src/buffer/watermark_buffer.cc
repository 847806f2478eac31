#include "buffer/watermark_buffer.h"

#include <utility>

namespace sluice::buffer {

struct WatermarkBuffer::Functions {
  std::function<void()> below_low;
  std::function<void()> above_high;
};

WatermarkBuffer::WatermarkBuffer(Callback callback, void* context)
    : callback_(callback), context_(context) {}

WatermarkBuffer::WatermarkBuffer(std::function<void()> below_low_watermark,
                                 std::function<void()> above_high_watermark)
    : callback_(&WatermarkBuffer::callFunctions),
      context_(new Functions{std::move(below_low_watermark), std::move(above_high_watermark)}) {}

WatermarkBuffer::~WatermarkBuffer() {
  if (callback_ == &WatermarkBuffer::callFunctions) delete static_cast<Functions*>(context_);
}

void WatermarkBuffer::callFunctions(void* functions, bool above_high) {
  Functions& f = *static_cast<Functions*>(functions);
  std::function<void()>& fn = above_high ? f.above_high : f.below_low;
  if (fn) fn();
}

void WatermarkBuffer::setWatermarks(uint32_t high) {
  high_watermark_ = high;
  if (high == 0) {
    if (above_high_) {
      above_high_ = false;
      notify(false);
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
      notify(true);
    }
  } else if (length() <= high_watermark_ / 2) {
    above_high_ = false;
    notify(false);
  }
}

}  // namespace sluice::buffer
