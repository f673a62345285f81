"""Feature engine (pure): sample blocks in, one FeatureVector per asset per stride out.

Features are named "<channel>.<feature>". Per vibration channel, over the window span (see
incremental.py):

- mean, std (population, ddof 0), rms, peak (max |x|), crest_factor (peak / rms; 1 when all zero)
- excess_kurtosis: Fisher's definition, normal = 0, biased estimator (as
  scipy.stats.kurtosis(fisher=True, bias=True)); 0 for a flat line
- spectral_energy: the Welch PSD integrated over 0..Nyquist (sum of bins x df; a plain sum of
  bins with scaling="spectrum", as are the bands)
- dominant_freq_hz: frequency of the largest PSD bin above DC; 0 for a flat line
- band_<lo>_<hi>hz: PSD integrated over lo <= f < hi (f <= hi for a band ending at Nyquist);
  by default five equal bands from 0 to the channel's Nyquist frequency

Per slow channel, over [window_end - slow_window_s, window_end): mean, std, min, max and slope
(least squares against sample times, units per second); NaN while the window is empty, slope NaN
with fewer than two samples.
"""

from appliance.features.asset import AssetFeatures
from appliance.features.settings import ChannelSpec, FeatureSettings, feature_names

__all__ = ["AssetFeatures", "ChannelSpec", "FeatureSettings", "feature_names"]
