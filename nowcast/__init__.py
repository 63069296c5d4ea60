"""nowcast: reproducible precipitation nowcasting with ConvLSTM encoder-decoder networks."""

__version__ = "0.1.0"
