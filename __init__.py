def classFactory(iface):  # noqa: N802
    from .plugin.sarcoreg_plugin import SarcoregPlugin
    return SarcoregPlugin(iface)
